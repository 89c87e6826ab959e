//! Names the drive keeps locally but never versions (SPEC §4): editors' lock, swap and
//! temp files, and the litter file managers leave behind.
//!
//! Matching is on the file's own name, ASCII case-insensitive (Windows apps write `.TMP`
//! as often as `.tmp`), with the client's matcher. Beyond SPEC's list the drive adds `*~` (backup copies made by vim, emacs and
//! gedit while saving; their content is the previous version, which is already stored)
//! and `4913` (the probe file vim creates and deletes to test a folder).

use crate::client::ignore::{DEFAULT_PATTERNS, IgnoreList};

/// What the drive adds to the shared list.
pub const DRIVE_EXTRA_PATTERNS: &[&str] = &["*~", "4913"];

/// The drive's list: SPEC §4's (shared with `ects backup`) plus [`DRIVE_EXTRA_PATTERNS`].
pub fn drive_ignore_list() -> IgnoreList {
    IgnoreList::new(
        DEFAULT_PATTERNS
            .iter()
            .chain(DRIVE_EXTRA_PATTERNS)
            .map(|p| (*p).to_owned()),
    )
}

/// Whether a file with this name is never versioned by the drive.
pub fn is_ignored(name: &str) -> bool {
    static LIST: std::sync::OnceLock<IgnoreList> = std::sync::OnceLock::new();
    LIST.get_or_init(drive_ignore_list).is_ignored(name)
}

#[cfg(test)]
mod tests {
    use super::is_ignored;

    #[test]
    fn spec_patterns() {
        for name in [
            "~$essay.docx",
            "~WRL0001.tmp",
            "~WRD0003.TMP",
            "lu12345.tmp",
            "x.tmp",
            ".~lock.essay.odt#",
            ".essay.txt.swp",
            ".essay.txt.swx",
            ".DS_Store",
            "Thumbs.db",
            "thumbs.db",
            "desktop.ini",
            "Desktop.ini",
            ".goutputstream-ABC123",
            "essay.txt~",
            "4913",
        ] {
            assert!(is_ignored(name), "{name} should be ignored");
        }
    }

    #[test]
    fn ordinary_names() {
        for name in [
            "essay.docx",
            "tmp",
            "tmp.txt",
            "a.tmpl",
            "~notes.txt",
            ".~lock.odt",
            "lock#",
            "swp",
            "Makefile",
            ".bashrc",
            "49130",
            ".versions",
        ] {
            assert!(!is_ignored(name), "{name} should be versioned");
        }
    }
}
