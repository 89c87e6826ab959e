//! Where a client command connects and as whom: `--server`, `--user`, the password
//! (`--password-file`, `ECTS_PASSWORD`, or a prompt on a terminal), an extra CA file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::ClientError;
use crate::cli::ConnectArgs;
use crate::names::UserName;

/// Everything needed to reach a server. `Debug` never shows the password.
#[derive(Clone)]
pub struct ConnectConfig {
    /// Base URL, e.g. `https://ects.school.lan:8080` (a bare `host:port` gets `http://`).
    pub server: String,
    pub user: UserName,
    pub password: String,
    /// Extra PEM root certificate(s) to trust.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl ConnectConfig {
    pub fn new(server: &str, user: UserName, password: String) -> Self {
        Self {
            server: normalize_server(server),
            user,
            password,
            ca_file: None,
        }
    }

    /// Reads the settings from the command line / environment. The password comes from
    /// `--password-file` (first line), else `ECTS_PASSWORD` / `--password`, else a prompt
    /// when stdin is a terminal; otherwise a clear error.
    pub fn from_args(args: &ConnectArgs) -> Result<Self, ClientError> {
        let server = match args.server.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => normalize_server(s),
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
        Ok(Self {
            server,
            user,
            password,
            ca_file: args.ca_file.clone(),
        })
    }
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

/// `host:port` → `http://host:port`; trailing slashes dropped.
fn normalize_server(s: &str) -> String {
    let s = s.trim().trim_end_matches('/');
    if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    }
}

/// The default cache folder for one server + user: `$XDG_CACHE_HOME/ects/<server>_<user>`
/// (or `~/.cache/...`). The drive keeps its backing folder and spool there; `ects backup`
/// its spool and hash cache.
pub fn default_cache_dir(server: &str, user: &UserName) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .or_else(windows_cache_base)?;
    let server = normalize_server(server);
    let host: String = server
        .split_once("://")
        .map_or(server.as_str(), |(_, rest)| rest)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(base.join("ects").join(format!("{host}_{user}")))
}

/// Windows has no HOME: its per-user, non-roaming cache folder is %LOCALAPPDATA%.
fn windows_cache_base() -> Option<PathBuf> {
    if !cfg!(windows) {
        return None;
    }
    std::env::var_os("LOCALAPPDATA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The spool folder inside a cache folder. The drive, `ects backup` and `ects status`
/// all agree on it.
pub fn spool_dir(cache: &Path) -> PathBuf {
    cache.join("spool")
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
        let cfg = ConnectConfig::from_args(&args()).unwrap();
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
        assert_eq!(ConnectConfig::from_args(&a).unwrap().password, "secret one");
        std::fs::write(&f, "").unwrap();
        assert!(ConnectConfig::from_args(&a).is_err());
        a.password_file = Some(dir.path().join("missing"));
        let e = ConnectConfig::from_args(&a).unwrap_err().to_string();
        assert!(e.contains("cannot read the password file"), "{e}");
    }

    #[test]
    fn missing_settings_are_clear() {
        let mut a = args();
        a.server = None;
        assert!(
            ConnectConfig::from_args(&a)
                .unwrap_err()
                .to_string()
                .contains("--server")
        );
        let mut a = args();
        a.user = Some("bad name".into());
        assert!(
            ConnectConfig::from_args(&a)
                .unwrap_err()
                .to_string()
                .contains("--user")
        );
    }

    #[test]
    fn cache_dir_names() {
        let u = UserName::parse("asdf").unwrap();
        let d = default_cache_dir("https://ects.lan:8443/", &u);
        if let Some(d) = d {
            assert!(d.ends_with("ects/ects.lan_8443_asdf"), "{}", d.display());
        }
        assert_eq!(spool_dir(Path::new("/c")), Path::new("/c/spool"));
    }
}
