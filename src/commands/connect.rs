//! Reading where to connect and as whom from the command line and environment
//! (`--server`, `--user`, `--password-file` / `ECTS_PASSWORD` / a prompt on a terminal,
//! `--ca-file`) into the client library's plain [`ConnectConfig`].

use std::io::IsTerminal;
use std::path::Path;

use crate::cli::ConnectArgs;
use crate::client::{ClientError, ConnectConfig};
use crate::names::UserName;

/// The password comes from `--password-file` (first line), else `ECTS_PASSWORD` /
/// `--password`, else a prompt when stdin is a terminal; otherwise a clear error.
pub fn config(args: &ConnectArgs) -> Result<ConnectConfig, ClientError> {
    let server = match args.server.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(ClientError::Config(
                "no server given: use --server URL (or set ECTS_SERVER), e.g. --server http://ects.school.lan:8080"
                    .into(),
            ));
        }
    };
    let user = match args.user.as_deref() {
        Some(u) if !u.is_empty() => {
            UserName::parse(u).map_err(|e| ClientError::Config(format!("--user: {e}")))?
        }
        _ => {
            return Err(ClientError::Config(
                "no user given: use --user NAME (or set ECTS_USER)".into(),
            ));
        }
    };
    let password = if let Some(file) = &args.password_file {
        read_password_file(file)?
    } else if let Some(p) = &args.password {
        p.clone()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {user} at {server}: "))
            .map_err(|e| ClientError::Config(format!("could not read the password: {e}")))?
    } else {
        return Err(ClientError::Config(
            "no password given: use --password-file FILE or set ECTS_PASSWORD (no terminal to ask on)"
                .into(),
        ));
    };
    let mut cfg = ConnectConfig::new(server, user, password);
    cfg.ca_file = args.ca_file.clone();
    Ok(cfg)
}

fn read_password_file(file: &Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ClientError::Config(format!(
            "cannot read the password file {}: {e}",
            file.display()
        ))
    })?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(ClientError::Config(format!(
            "the password file {} is empty",
            file.display()
        )));
    }
    Ok(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConnectArgs {
        ConnectArgs {
            server: Some("127.0.0.1:8080/".into()),
            user: Some("asdf".into()),
            password_file: None,
            password: Some("pw".into()),
            ca_file: None,
        }
    }

    #[test]
    fn from_args() {
        let cfg = config(&args()).unwrap();
        assert_eq!(cfg.server, "http://127.0.0.1:8080");
        assert_eq!(cfg.user.as_str(), "asdf");
        assert_eq!(cfg.password, "pw");
        assert!(!format!("{cfg:?}").contains("pw\""));
    }

    #[test]
    fn password_file_wins_and_takes_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "secret one\nsecond\n").unwrap();
        let mut a = args();
        a.password_file = Some(f.clone());
        assert_eq!(config(&a).unwrap().password, "secret one");
        std::fs::write(&f, "").unwrap();
        assert!(config(&a).is_err());
        a.password_file = Some(dir.path().join("missing"));
        let e = config(&a).unwrap_err().to_string();
        assert!(e.contains("cannot read the password file"), "{e}");
    }

    #[test]
    fn missing_settings_are_clear() {
        let mut a = args();
        a.server = None;
        assert!(config(&a).unwrap_err().to_string().contains("--server"));
        let mut a = args();
        a.user = Some("bad name".into());
        assert!(config(&a).unwrap_err().to_string().contains("--user"));
    }
}
