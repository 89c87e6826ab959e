use std::process::ExitCode;

use clap::Parser;
use ects::cli::{Cli, Command};
use ects::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    ects::logging::init(cli.verbose);
    let result = match cli.command {
        Command::Server(args) => commands::server(args),
        Command::User(args) => commands::user(args),
        Command::Mount(args) => commands::mount(args),
        Command::Backup(args) => commands::backup(args),
        Command::Versions(args) => commands::versions(args),
        Command::Restore(args) => commands::restore(args),
        Command::Status(args) => commands::status(args),
        Command::Fsck(args) => commands::fsck(&args),
        Command::Collect(args) => commands::collect(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            commands::exit_code(&e)
        }
    }
}
