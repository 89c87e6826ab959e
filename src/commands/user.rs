use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::{RoleArg, UserArgs, UserCommand};
use crate::names::UserName;
use crate::users::{Role, UserDb};

/// `ects user add|passwd|disable|list --data DIR`.
pub fn user(args: UserArgs) -> anyhow::Result<ExitCode> {
    let db = UserDb::open(&args.data)
        .with_context(|| format!("opening the users of {}", args.data.display()))?;
    match args.command {
        UserCommand::Add {
            name,
            role,
            password_file,
        } => {
            let name = UserName::parse(&name)?;
            let password = read_new_password(password_file.as_deref())?;
            let role = match role {
                RoleArg::Student => Role::Student,
                RoleArg::Teacher => Role::Teacher,
            };
            db.add(&name, role, &password)?;
            println!("added {role} {name}");
        }
        UserCommand::Passwd {
            name,
            password_file,
        } => {
            let name = UserName::parse(&name)?;
            let password = read_new_password(password_file.as_deref())?;
            db.passwd(&name, &password)?;
            println!("password of {name} changed");
        }
        UserCommand::Disable { name } => {
            let name = UserName::parse(&name)?;
            db.disable(&name)?;
            println!("{name} disabled; their stored work is kept");
        }
        UserCommand::List => {
            for u in db.list()? {
                let state = if u.disabled { "disabled" } else { "enabled" };
                println!("{:<32} {:<8} {state}", u.name.as_str(), u.role.to_string());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A new password from a file (its first line), `ECTS_PASSWORD`, or a prompt asked twice.
pub fn read_new_password(file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the password file {}", file.display()))?;
        return Ok(text.lines().next().unwrap_or("").to_owned());
    }
    if let Ok(pw) = std::env::var("ECTS_PASSWORD") {
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password given: use --password-file FILE or set ECTS_PASSWORD");
    }
    let first = rpassword::prompt_password("New password: ").context("reading the password")?;
    let second = rpassword::prompt_password("Again: ").context("reading the password")?;
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}
