use std::process::ExitCode;

use clap::Parser;
use ects::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    ects::logging::init(cli.verbose);
    let result = match cli.command {
        Command::Fsck(args) => ects::commands::fsck(&args),
        other => {
            eprintln!("ects: `{}` is not available yet", command_name(&other));
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Server(_) => "server",
        Command::User(_) => "user",
        Command::Mount(_) => "mount",
        Command::Backup(_) => "backup",
        Command::Versions(_) => "versions",
        Command::Restore(_) => "restore",
        Command::Status(_) => "status",
        Command::Fsck(_) => "fsck",
    }
}
