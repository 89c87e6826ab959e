//! Names that are kept locally but never uploaded (SPEC §4): editor lock and swap
//! files, OS thumbnails and folder settings, temp files, editor backups. Shared by the
//! drive and `ects backup`, so both skip exactly the same files.

/// The default patterns. `*` matches any run of characters; matching ignores ASCII case,
/// because the same names show up in upper case from Windows tools (`THUMBS.DB`, `X.TMP`).
pub const DEFAULT_PATTERNS: &[&str] = &[
    "~$*",
    "~*.tmp",
    "*.tmp",
    ".~lock.*#",
    "*.swp",
    "*.swx",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    ".goutputstream-*",
    // Beyond SPEC's list: backup copies vim, emacs and gedit make while saving (their
    // content is the previous version, already stored) and the probe file vim creates
    // and deletes to test a folder. Without these a vim save leaves stray versions.
    "*~",
    "4913",
];

/// Whether a file name (one path component, not a path) matches a default pattern.
pub fn is_ignored(name: &str) -> bool {
    DEFAULT_PATTERNS.iter().any(|p| glob_match(p, name))
}

/// A configurable list of patterns, for callers that let an admin add their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreList {
    patterns: Vec<String>,
}

impl Default for IgnoreList {
    fn default() -> Self {
        Self {
            patterns: DEFAULT_PATTERNS.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

impl IgnoreList {
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Self {
        Self {
            patterns: patterns.into_iter().collect(),
        }
    }

    pub fn is_ignored(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, name))
    }
}

/// `*`-only glob, ASCII case-insensitive, over Unicode scalar values.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let n: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Classic backtracking over the last `*`: linear for the patterns above.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_names() {
        for name in [
            "~$essay.docx",
            "~WRL0001.tmp",
            "x.tmp",
            "X.TMP",
            ".~lock.report.odt#",
            ".essay.txt.swp",
            "a.swx",
            ".DS_Store",
            "Thumbs.db",
            "THUMBS.DB",
            "desktop.ini",
            ".goutputstream-ABC123",
            "essay.txt~",
            "4913",
        ] {
            assert!(is_ignored(name), "{name} should be ignored");
        }
    }

    #[test]
    fn kept_names() {
        for name in [
            "essay.docx",
            "tmp",
            "x.tmpl",
            "~notes.txt",
            ".~lock.report.odt",
            "swp",
            "a.swp.txt",
            "Thumbs.db.bak",
            "my desktop.ini.txt",
            "Übung.tmp.odt",
            "49130",
            ".versions",
            "",
        ] {
            assert!(!is_ignored(name), "{name} should be kept");
        }
    }

    #[test]
    fn custom_list() {
        let list = IgnoreList::new(["*.bak".to_owned(), "a*b*c".to_owned()]);
        assert!(list.is_ignored("x.BAK"));
        assert!(list.is_ignored("aXXbYYc"));
        assert!(list.is_ignored("abc"));
        assert!(!list.is_ignored("acb"));
        assert!(!list.is_ignored("x.tmp"));
        assert!(IgnoreList::default().is_ignored("x.tmp"));
    }
}
