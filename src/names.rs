//! Validated user names and store paths.
//!
//! Every name that reaches the store, the server or the drive passes through
//! [`UserName::parse`] or [`RelPath::parse`] first, so the rest of the code can
//! treat them as safe: a `RelPath` can never name anything outside
//! `uploads/<user>/`, whatever the client sent.

use std::fmt;

/// Longest path accepted, in bytes (SPEC §3).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single component accepted, in bytes (SPEC §3; also most filesystems' limit).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest user name accepted.
pub const MAX_USER_BYTES: usize = 64;

/// Why a user name or path was refused. The messages are for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the user name is empty")]
    EmptyUser,
    #[error("the user name is longer than {MAX_USER_BYTES} characters")]
    UserTooLong,
    #[error("the user name {0:?} may only contain letters A-Z, a-z, digits, '.', '_' and '-'")]
    UserBadChar(String),
    #[error("the user name {0:?} must not start with '.'")]
    UserLeadingDot(String),
    #[error(
        "the user name {0:?} is reserved (a Windows device name or an admin word); choose another"
    )]
    UserReserved(String),
    #[error("the user name {0:?} must not end with '.' (Windows drops it)")]
    UserTrailingDot(String),
    #[error("the path is empty")]
    EmptyPath,
    #[error("the path must be relative, not start with '/'")]
    Absolute,
    #[error("the path has an empty component (\"//\" or a trailing '/')")]
    EmptyComponent,
    #[error("the path must not contain '.' or '..' components")]
    DotComponent,
    #[error("the path contains a NUL or control character")]
    ControlChar,
    #[error("the path contains a backslash; use '/' to separate folders")]
    Backslash,
    #[error("a path component is longer than {MAX_COMPONENT_BYTES} bytes")]
    ComponentTooLong,
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    PathTooLong,
    #[error("the name is not valid UTF-8")]
    NotUtf8,
}

/// A user name: `[A-Za-z0-9._-]{1,64}`, not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::EmptyUser);
        }
        if s.len() > MAX_USER_BYTES {
            return Err(NameError::UserTooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(NameError::UserBadChar(s.to_owned()));
        }
        if s.starts_with('.') {
            return Err(NameError::UserLeadingDot(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The stricter rule for a name being created (`user add`, `user import`,
    /// registration): on top of [`UserName::parse`], no Windows device name (`con`,
    /// `nul.x`, `com1`), no trailing `.` and no admin word, since a name becomes a
    /// folder on Windows lab PCs and a look-alike of an admin misleads people.
    /// Uniqueness ignoring case is checked against the users that exist
    /// (`UserDb::add`). Existing users keep working under the plain rule.
    pub fn parse_new(s: &str) -> Result<Self, NameError> {
        let name = Self::parse(s)?;
        if s.ends_with('.') {
            return Err(NameError::UserTrailingDot(s.to_owned()));
        }
        if is_reserved_user(s) {
            return Err(NameError::UserReserved(s.to_owned()));
        }
        Ok(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Admin words nobody may sign up as, compared ignoring case.
const RESERVED_USERS: &[&str] = &["admin", "administrator", "root", "system", "ects"];

/// A DOS device name before the first dot (`con`, `NUL.txt`, `lpt1`), or an admin word.
fn is_reserved_user(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let stem = lower.split('.').next().unwrap_or(&lower);
    let device = matches!(stem, "con" | "prn" | "aux" | "nul")
        || (stem.len() == 4
            && (stem.starts_with("com") || stem.starts_with("lpt"))
            && stem.as_bytes()[3].is_ascii_digit());
    device || RESERVED_USERS.contains(&lower.as_str())
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A relative, `/`-separated path inside a user's namespace, with at least one
/// component. Components are never empty, `.` or `..`, and contain no control
/// characters or backslashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::EmptyPath);
        }
        if s.len() > MAX_PATH_BYTES {
            return Err(NameError::PathTooLong);
        }
        if s.starts_with('/') {
            return Err(NameError::Absolute);
        }
        for component in s.split('/') {
            check_component(component)?;
        }
        Ok(Self(s.to_owned()))
    }

    /// Turns a relative local path (a folder walk, a drive node) into a store path.
    /// Joins the components with `/` whatever the platform: formatting a `Path` would
    /// join them with `\\` on Windows, which [`RelPath::parse`] rightly refuses, and no
    /// file inside a subfolder would ever get a version.
    pub fn from_local(path: &std::path::Path) -> Result<Self, NameError> {
        use std::path::Component;
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(c) => parts.push(c.to_str().ok_or(NameError::NotUtf8)?),
                Component::CurDir | Component::ParentDir => {
                    return Err(NameError::DotComponent);
                }
                Component::RootDir | Component::Prefix(_) => return Err(NameError::Absolute),
            }
        }
        Self::parse(&parts.join("/"))
    }

    /// Parses a folder path where the empty string means the namespace's root.
    pub fn parse_dir(s: &str) -> Result<Option<Self>, NameError> {
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        if trimmed.is_empty() && !s.starts_with("//") {
            return Ok(None);
        }
        Self::parse(trimmed).map(Some)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.split('/')
    }

    /// The last component: the file's own name.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The folder holding this path, or `None` at the root.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rfind('/').map(|i| RelPath(self.0[..i].to_owned()))
    }

    /// Appends one validated component.
    pub fn join(&self, component: &str) -> Result<RelPath, NameError> {
        RelPath::parse(&format!("{}/{}", self.0, component))
    }

    /// The extension a version file of this path carries (SPEC §2), e.g. `.docx`.
    pub fn version_ext(&self) -> &str {
        version_ext(self.file_name())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks one path component (a file or folder name).
pub fn check_component(c: &str) -> Result<(), NameError> {
    if c.is_empty() {
        return Err(NameError::EmptyComponent);
    }
    if c == "." || c == ".." {
        return Err(NameError::DotComponent);
    }
    if c.len() > MAX_COMPONENT_BYTES {
        return Err(NameError::ComponentTooLong);
    }
    if c.chars().any(char::is_control) {
        return Err(NameError::ControlChar);
    }
    if c.contains('\\') {
        return Err(NameError::Backslash);
    }
    Ok(())
}

/// The last extension of a file name, with its dot and case kept: `a.tar.gz` → `.gz`,
/// `.bashrc` / `Makefile` / `x.` → `""`. An extension too long to fit next to a 64-digit
/// hash in a 255-byte file name is dropped, so every version file name stays valid.
pub fn version_ext(name: &str) -> &str {
    match name.rfind('.') {
        Some(0) | None => "",
        Some(i) if i + 1 == name.len() => "",
        Some(i) if 64 + (name.len() - i) > MAX_COMPONENT_BYTES => "",
        Some(i) => &name[i..],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_user_names_refuse_devices_trailing_dots_and_admin_words() {
        for bad in [
            "con",
            "NUL",
            "aux.x",
            "com1",
            "LPT9",
            "a.",
            "admin",
            "Administrator",
        ] {
            assert!(UserName::parse_new(bad).is_err(), "{bad}");
            if bad != "a." {
                assert!(UserName::parse(bad).is_ok(), "existing {bad} still parses");
            }
        }
        for good in ["console", "com", "com10", "anna.k", "mrs-k", "nullius"] {
            assert!(UserName::parse_new(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn user_names() {
        for ok in ["asdf", "a", "Jane.Doe", "x_y-z", &"a".repeat(64)] {
            assert!(UserName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "a b",
            "a/b",
            "é",
            "a\0",
            &"a".repeat(65),
            "..",
        ] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_paths_become_slash_joined_store_paths() {
        let local = std::path::Path::new("New folder")
            .join("Übung 1")
            .join("a b.txt");
        let p = RelPath::from_local(&local).unwrap();
        assert_eq!(p.as_str(), "New folder/Übung 1/a b.txt");
        assert_eq!(
            RelPath::from_local(std::path::Path::new("a.txt"))
                .unwrap()
                .as_str(),
            "a.txt"
        );
        for (bad, want) in [
            ("", NameError::EmptyPath),
            ("a/../b", NameError::DotComponent),
            ("/a", NameError::Absolute),
        ] {
            assert_eq!(
                RelPath::from_local(std::path::Path::new(bad)).unwrap_err(),
                want,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn paths_accepted() {
        for ok in [
            "a",
            "Documents/New folder/New Microsoft Word Document - Copy (13).docx",
            "Übung/日本語 [draft] {1}.txt",
            "a/.bashrc",
            "...",
            "a..b/c",
        ] {
            let p = RelPath::parse(ok).unwrap();
            assert_eq!(p.as_str(), ok);
        }
    }

    #[test]
    fn paths_refused() {
        let long_component = "x".repeat(256);
        let long_path = vec!["y"; 2100].join("/");
        let cases: &[(&str, NameError)] = &[
            ("", NameError::EmptyPath),
            ("/etc/passwd", NameError::Absolute),
            ("a//b", NameError::EmptyComponent),
            ("a/", NameError::EmptyComponent),
            ("a/./b", NameError::DotComponent),
            ("../x", NameError::DotComponent),
            ("a/../../x", NameError::DotComponent),
            ("a\0b", NameError::ControlChar),
            ("a\nb", NameError::ControlChar),
            ("a\u{7f}", NameError::ControlChar),
            ("a\u{85}", NameError::ControlChar),
            ("..\\x", NameError::Backslash),
            (&long_component, NameError::ComponentTooLong),
            (&long_path, NameError::PathTooLong),
        ];
        for (input, want) in cases {
            assert_eq!(RelPath::parse(input).unwrap_err(), *want, "{input:?}");
        }
    }

    #[test]
    fn dirs() {
        assert_eq!(RelPath::parse_dir("").unwrap(), None);
        assert_eq!(RelPath::parse_dir("/").unwrap(), None);
        assert_eq!(RelPath::parse_dir("a/b/").unwrap().unwrap().as_str(), "a/b");
        assert!(RelPath::parse_dir("//").is_err());
        assert!(RelPath::parse_dir("a/../b").is_err());
    }

    #[test]
    fn parts() {
        let p = RelPath::parse("a/b/c.txt").unwrap();
        assert_eq!(p.file_name(), "c.txt");
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(RelPath::parse("c").unwrap().parent(), None);
        assert_eq!(p.components().collect::<Vec<_>>(), ["a", "b", "c.txt"]);
        assert!(p.join("..").is_err());
    }

    #[test]
    fn extensions() {
        assert_eq!(version_ext("Copy (13).docx"), ".docx");
        assert_eq!(version_ext("a.tar.gz"), ".gz");
        assert_eq!(version_ext(".bashrc"), "");
        assert_eq!(version_ext("Makefile"), "");
        assert_eq!(version_ext("x."), "");
        assert_eq!(version_ext("X.PDF"), ".PDF");
        let long = format!("a.{}", "e".repeat(200));
        assert_eq!(version_ext(&long), "");
        let fits = format!("a.{}", "e".repeat(190));
        assert_eq!(version_ext(&fits).len(), 191);
    }
}
