//! The network share a Windows drive is served as (`--volume-prefix \ects\alice`), and
//! whose drive that is. Platform-neutral, so Linux tests cover it; only
//! [`windows`](super::windows) uses it.
//!
//! WinFsp's launcher starts `ects mount %2 --volume-prefix %1 …` for
//! `net use B: \\ects\alice`: `%1` is the path with one leading backslash
//! (`\ects\alice`), `%2` the drive letter (`B:`, empty without one). The share's last
//! part names the drive's user. It must never end up uploading as someone else: a share
//! for another name than the Windows account's is refused unless `--user`/`ECTS_USER`
//! names that same user on purpose, and a `--user` that contradicts the share is
//! refused too.

use crate::names::UserName;

/// Why a share cannot be mounted, for the person who mapped it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error(
        "--volume-prefix {0:?}: give it as \\server\\share, e.g. \\ects\\alice \
         (Explorer then shows \\\\ects\\alice)"
    )]
    BadPrefix(String),
    #[error("the share \\\\{server}\\{share} names no valid ects user ({why})")]
    BadUser {
        server: String,
        share: String,
        why: String,
    },
    #[error(
        "the share \\\\{server}\\{share} is the drive of {share:?}, but --user/ECTS_USER says \
         {explicit:?}: refusing to mount one user's drive as another. Map \\\\{server}\\{explicit} \
         instead, or fix ECTS_USER"
    )]
    UserMismatch {
        server: String,
        share: String,
        explicit: String,
    },
    #[error(
        "the share \\\\{server}\\{share} is the drive of {share:?}, but you are signed in to \
         Windows as {os_user:?}: refusing to save your work as someone else. Map \
         \\\\{server}\\%USERNAME%, or give --user {share} (ECTS_USER) if that really is \
         your ects name"
    )]
    NotYours {
        server: String,
        share: String,
        os_user: String,
    },
}

/// A parsed `\server\share`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub server: String,
    pub share: String,
}

/// Parses WinFsp's network prefix, `\server\share`: each part a plain name. A trailing
/// backslash (`\\ects\alice\` typed in Explorer) is dropped, as WinFsp's network
/// provider drops it from the instance name.
pub fn parse_prefix(prefix: &str) -> Result<Share, ShareError> {
    let bad = || ShareError::BadPrefix(prefix.to_owned());
    let rest = prefix.strip_prefix('\\').ok_or_else(bad)?;
    let rest = rest.trim_end_matches('\\');
    let parts: Vec<&str> = rest.split('\\').collect();
    let plain = |p: &&str| {
        !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '$'))
    };
    match parts.as_slice() {
        [server, share] if plain(server) && plain(share) => Ok(Share {
            server: (*server).to_owned(),
            share: (*share).to_owned(),
        }),
        _ => Err(bad()),
    }
}

/// Whose drive the share is: the share's name, checked against an explicit
/// `--user`/`ECTS_USER` (must agree) and, without one, against the Windows account
/// (`os_user`, must agree). Names compare without ASCII case, as Windows account names
/// do; the explicit spelling wins, else the share's.
pub fn share_user(
    share: &Share,
    explicit: Option<&str>,
    os_user: Option<&str>,
) -> Result<UserName, ShareError> {
    let named = UserName::parse(&share.share).map_err(|e| ShareError::BadUser {
        server: share.server.clone(),
        share: share.share.clone(),
        why: e.to_string(),
    })?;
    let same = |other: &str| other.eq_ignore_ascii_case(named.as_str());
    match explicit.filter(|u| !u.is_empty()) {
        Some(u) if same(u) => UserName::parse(u).map_err(|e| ShareError::BadUser {
            server: share.server.clone(),
            share: share.share.clone(),
            why: e.to_string(),
        }),
        Some(u) => Err(ShareError::UserMismatch {
            server: share.server.clone(),
            share: share.share.clone(),
            explicit: u.to_owned(),
        }),
        None => match os_user.filter(|u| !u.is_empty()) {
            Some(os) if !same(os) => Err(ShareError::NotYours {
                server: share.server.clone(),
                share: share.share.clone(),
                os_user: os.to_owned(),
            }),
            _ => Ok(named),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(s: &str) -> Share {
        parse_prefix(s).unwrap()
    }

    #[test]
    fn the_launchers_prefix_parses() {
        assert_eq!(
            share("\\ects\\alice"),
            Share {
                server: "ects".into(),
                share: "alice".into()
            }
        );
        assert_eq!(share("\\ects\\alice\\").share, "alice");
        for bad in [
            "",
            "ects\\alice",
            "\\\\ects\\alice",
            "\\ects",
            "\\ects\\",
            "\\ects\\a\\b",
            "\\ects\\al ice",
            "\\ects\\a/b",
        ] {
            let e = parse_prefix(bad).unwrap_err();
            assert_eq!(e, ShareError::BadPrefix(bad.into()), "{bad:?}");
            assert!(e.to_string().contains("\\server\\share"), "{e}");
        }
    }

    /// `net use B: \\ects\alice` by alice, with no --user: alice's drive. Before the
    /// fix no user reached `ects mount` and the mount failed ("no user given").
    #[test]
    fn the_share_names_the_user() {
        let u = share_user(&share("\\ects\\alice"), None, Some("alice")).unwrap();
        assert_eq!(u.as_str(), "alice");
        // Windows account names ignore case; the share's spelling is used.
        let u = share_user(&share("\\ects\\Alice"), None, Some("ALICE")).unwrap();
        assert_eq!(u.as_str(), "Alice");
        // No account name known (a service): the share decides.
        let u = share_user(&share("\\ects\\alice"), None, None).unwrap();
        assert_eq!(u.as_str(), "alice");
        // An explicit --user that agrees: its spelling wins.
        let u = share_user(&share("\\ects\\ALICE"), Some("alice"), Some("bob")).unwrap();
        assert_eq!(u.as_str(), "alice");
    }

    #[test]
    fn never_someone_elses_drive_in_silence() {
        // ECTS_USER=bob (a shared PC's leftover) mapping \\ects\alice.
        let e = share_user(&share("\\ects\\alice"), Some("bob"), Some("bob")).unwrap_err();
        assert!(matches!(e, ShareError::UserMismatch { .. }), "{e:?}");
        assert!(e.to_string().contains("refusing"), "{e}");
        // bob, signed in to Windows, maps alice's share.
        let e = share_user(&share("\\ects\\alice"), None, Some("bob")).unwrap_err();
        assert!(matches!(e, ShareError::NotYours { .. }), "{e:?}");
        assert!(e.to_string().contains("as \"bob\""), "{e}");
        // A share that is no ects user name.
        let e = share_user(&share("\\ects\\.hidden"), None, None).unwrap_err();
        assert!(matches!(e, ShareError::BadUser { .. }), "{e:?}");
    }
}
