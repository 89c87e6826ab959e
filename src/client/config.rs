//! Where the client connects and as whom: a plain [`ConnectConfig`]. Reading it from
//! the command line (clap's `ConnectArgs`, the password prompt) is the binary's job:
//! `src/commands/connect.rs`.

use std::path::{Path, PathBuf};

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

    #[test]
    fn server_addresses_are_normalized() {
        let u = UserName::parse("asdf").unwrap();
        let cfg = ConnectConfig::new("127.0.0.1:8080/", u, "pw".into());
        assert_eq!(cfg.server, "http://127.0.0.1:8080");
        assert!(!format!("{cfg:?}").contains("pw\""));
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
