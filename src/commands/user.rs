use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::{RoleArg, UserArgs, UserCommand};
use crate::names::UserName;
use crate::users::{Role, UserDb, check_new_password};

mod import;

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
            let name = UserName::parse_new(&name)?;
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
        UserCommand::Import { csv, passwords_out } => {
            import_class_list(&db, &csv, passwords_out.as_deref())?;
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

/// `ects user import CLASS.csv`: checks every line first, writes the generated
/// passwords to a new private file, then adds every user in one rewrite of users.toml.
fn import_class_list(db: &UserDb, csv: &Path, passwords_out: Option<&Path>) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(csv).with_context(|| format!("reading the class list {}", csv.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "{} is not UTF-8 text; save it from the spreadsheet as \"CSV UTF-8\"",
            csv.display()
        )
    })?;
    let rows = match import::parse_class_list(&text, &db.list()?) {
        Ok(rows) => rows,
        Err(problems) => {
            for p in &problems {
                eprintln!("{}:{}: {}", csv.display(), p.line, p.message);
            }
            bail!(
                "nothing was imported: {} problem(s) in {}; fix them and run the import again",
                problems.len(),
                csv.display()
            );
        }
    };
    let (users, generated) = import::with_passwords(rows, &mut rand::rngs::OsRng);
    let out = match passwords_out {
        Some(p) => p.to_path_buf(),
        None => {
            let stem = csv.file_stem().unwrap_or_default().to_string_lossy();
            csv.with_file_name(format!("{stem}-passwords.csv"))
        }
    };
    if !generated.is_empty() {
        import::write_passwords_file(&out, &generated).with_context(|| {
            format!(
                "writing the generated passwords to {} (nothing was imported; an existing file is never replaced: choose another with --passwords-out)",
                out.display()
            )
        })?;
    }
    if let Err(e) = db.add_many(&users) {
        if !generated.is_empty() {
            // Those passwords belong to no account: don't leave a misleading list.
            let _ = std::fs::remove_file(&out);
        }
        return Err(anyhow::Error::new(e).context("nothing was imported"));
    }
    let teachers = users.iter().filter(|u| u.role == Role::Teacher).count();
    println!(
        "imported {} users: {} student(s), {teachers} teacher(s)",
        users.len(),
        users.len() - teachers
    );
    if !generated.is_empty() {
        println!(
            "{} generated passwords are in {} (readable only by you): hand them out, then delete it",
            generated.len(),
            out.display()
        );
    }
    Ok(())
}

/// A new password from a file (its first line), `ECTS_PASSWORD`, or a prompt asked
/// twice; refused unless it passes [`check_new_password`].
pub fn read_new_password(file: Option<&Path>) -> anyhow::Result<String> {
    let password = read_password_input(file)?;
    check_new_password(&password).context("nothing was changed")?;
    Ok(password)
}

fn read_password_input(file: Option<&Path>) -> anyhow::Result<String> {
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
