//! Windows file-name rules for the drive, kept here in the platform-neutral core so
//! they are tested on Linux and the WinFsp adapter only has to call them.
//!
//! - Names Windows forbids are refused with a reason a person understands
//!   ([`check_name`]): `<>:"/\|?*`, control characters, a trailing dot or space,
//!   device names (`CON`, `PRN`, `AUX`, `NUL`, `COM1`-`COM9`, `LPT1`-`LPT9`, also with
//!   an extension such as `nul.txt`).
//! - Lookups ignore case but keep it ([`Drive::windows_name`]): `ESSAY.docx` opens the
//!   existing `essay.docx`; a new file keeps the case it was created with.
//! - Office's `~$` owner files are ordinary (ignored, never versioned: see
//!   `crate::ignore`) but shown hidden, like on a Windows share ([`is_hidden`]).
//! - Delete-on-close is WinFsp's driver's bookkeeping: the adapter asks
//!   [`Drive::may_delete`] when a handle is marked and removes the name at the last
//!   cleanup.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;

use super::nodes::NodeKind;
use super::{Drive, DriveError, Ino, ROOT, Result, STATUS_FILE, VERSIONS_DIR, lock};

/// Why Windows would refuse a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowsNameError {
    #[error("the name is empty")]
    Empty,
    #[error("{0:?} is not valid text (UTF-16) for Windows")]
    NotUnicode(OsString),
    #[error(
        "{name:?} contains {ch:?}, which Windows does not allow in names (< > : \" / \\ | ? *)"
    )]
    ForbiddenChar { name: String, ch: char },
    #[error("{0:?} contains a control character")]
    ControlChar(String),
    #[error(
        "{0:?} ends with a dot or a space, which Windows drops: the file could not be opened again"
    )]
    TrailingDotOrSpace(String),
    #[error(
        "{0:?} is a device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9), even with an extension"
    )]
    DeviceName(String),
}

impl From<WindowsNameError> for DriveError {
    /// The adapter replies "invalid name" (STATUS_OBJECT_NAME_INVALID on Windows).
    fn from(_: WindowsNameError) -> Self {
        DriveError::EINVAL
    }
}

/// Checks one path component against Windows' rules.
pub fn check_name(name: &OsStr) -> std::result::Result<(), WindowsNameError> {
    let Some(s) = name.to_str() else {
        return Err(WindowsNameError::NotUnicode(name.to_owned()));
    };
    if s.is_empty() {
        return Err(WindowsNameError::Empty);
    }
    if let Some(ch) = s.chars().find(|c| r#"<>:"/\|?*"#.contains(*c)) {
        return Err(WindowsNameError::ForbiddenChar {
            name: s.to_owned(),
            ch,
        });
    }
    if s.chars().any(|c| (c as u32) < 0x20) {
        return Err(WindowsNameError::ControlChar(s.to_owned()));
    }
    if s != "." && s != ".." && (s.ends_with('.') || s.ends_with(' ')) {
        return Err(WindowsNameError::TrailingDotOrSpace(s.to_owned()));
    }
    if is_device_name(s) {
        return Err(WindowsNameError::DeviceName(s.to_owned()));
    }
    Ok(())
}

/// `CON`, `nul.txt`, `Com1.tar.gz`, `LPT9 .txt`, `COM¹`: the part before the first dot,
/// with trailing spaces dropped, is a DOS device name.
fn is_device_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let (prefix, rest) = upper.split_at(upper.len().min(3));
            (prefix == "COM" || prefix == "LPT")
                && matches!(
                    rest,
                    "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"
                )
        }
    }
}

/// The form two names are compared in: Windows compares names by upper-casing each
/// UTF-16 unit through a fixed table. Simple upper case per character is the same for
/// every name a student will type (and leaves characters with a multi-character
/// upper case, such as `ß`, alone, as Windows does).
pub fn fold(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Whether Windows sees `a` and `b` as the same name.
pub fn same_name(a: &OsStr, b: &OsStr) -> bool {
    a == b
        || match (a.to_str(), b.to_str()) {
            (Some(a), Some(b)) => fold(a) == fold(b),
            _ => false,
        }
}

/// The name of the entry in `dir` that Windows would open for `name`: `name` itself
/// when it exists, else the one entry that differs only in case (the first in sorted
/// order, if a Linux user made several), else `None`.
pub fn resolve_in(dir: &Path, name: &OsStr) -> io::Result<Option<OsString>> {
    match dir.join(name).symlink_metadata() {
        Ok(_) => return Ok(Some(stored_name(dir, name)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut matches: Vec<OsString> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| same_name(n, name))
        .collect();
    matches.sort();
    Ok(matches.into_iter().next())
}

/// The existing entry's own spelling of `name`. On a case-sensitive backing folder
/// (Linux) that is `name` itself.
#[cfg(not(windows))]
fn stored_name(_dir: &Path, name: &OsStr) -> io::Result<OsString> {
    Ok(name.to_owned())
}

/// On NTFS any spelling finds the entry, so ask for the stored one: without it
/// `HELLO.TXT` and `hello.txt` would become two nodes of one file. (`check_name` has
/// refused `*` and `?` before this, so the path is no search pattern.)
#[cfg(windows)]
fn stored_name(dir: &Path, name: &OsStr) -> io::Result<OsString> {
    use std::os::windows::ffi::{OsStrExt, OsStringExt};
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::Storage::FileSystem::{FindClose, FindFirstFileW, WIN32_FIND_DATAW};
    let path: Vec<u16> = dir
        .join(name)
        .as_os_str()
        .encode_wide()
        .chain(Some(0))
        .collect();
    // SAFETY: a NUL-terminated path and a zeroed plain-data struct for the answer; the
    // search handle is closed at once.
    let data = unsafe {
        let mut data: WIN32_FIND_DATAW = std::mem::zeroed();
        let handle = FindFirstFileW(path.as_ptr(), &mut data);
        if handle == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        FindClose(handle);
        data
    };
    let len = data
        .cFileName
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(data.cFileName.len());
    Ok(OsString::from_wide(&data.cFileName[..len]))
}

/// Whether the Windows adapter shows the entry with the hidden attribute: the
/// `.versions` folder at the root, and Office's `~$` owner files.
pub fn is_hidden(parent: Ino, name: &OsStr) -> bool {
    (parent == ROOT && name == VERSIONS_DIR) || name.to_str().is_some_and(|n| n.starts_with("~$"))
}

impl Drive {
    /// The name to use under `parent` for what a Windows program asked for: refuses a
    /// name Windows forbids, and returns the existing entry's own name when one
    /// differs only in case (so `ESSAY.DOCX` opens, replaces or renames `essay.docx`).
    /// A name nothing matches comes back as given: a new file keeps its case.
    pub fn windows_name(&self, parent: Ino, name: &OsStr) -> Result<OsString> {
        if parent == ROOT {
            for reserved in [VERSIONS_DIR, STATUS_FILE] {
                if same_name(name, OsStr::new(reserved)) {
                    return Ok(reserved.into());
                }
            }
        }
        if let Err(e) = check_name(name) {
            tracing::info!(reason = %e, "refused a name Windows does not allow");
            return Err(e.into());
        }
        let dir = {
            let t = lock(&self.nodes);
            match Self::kind_of(&t, parent)? {
                NodeKind::Backing => self.backing_path(&t, parent)?,
                // `.versions` names are made by the drive itself; match them exactly.
                _ => return Ok(name.to_owned()),
            }
        };
        Ok(resolve_in(&dir, name)?.unwrap_or_else(|| name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str) -> std::result::Result<(), WindowsNameError> {
        check_name(OsStr::new(s))
    }

    #[test]
    fn ordinary_names_pass() {
        for ok in [
            "essay.docx",
            "Copy (13).docx",
            "New folder",
            "~$essay.docx",
            ".versions",
            "résumé – final.odt",
            "日本語.txt",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert_eq!(check("console.txt"), Ok(()));
        assert_eq!(check("COM10"), Ok(()));
        assert_eq!(check("LPT0x"), Ok(()));
        assert_eq!(check("nullable.c"), Ok(()));
        assert_eq!(check(".gitignore"), Ok(()));
    }

    #[test]
    fn forbidden_characters_are_refused_with_the_character() {
        for ch in ['<', '>', ':', '"', '|', '?', '*', '\\'] {
            let name = format!("a{ch}b.txt");
            let err = check(&name).unwrap_err();
            assert_eq!(
                err,
                WindowsNameError::ForbiddenChar {
                    name: name.clone(),
                    ch
                }
            );
            assert!(err.to_string().contains("Windows does not allow"), "{err}");
        }
        assert!(matches!(
            check("tab\there"),
            Err(WindowsNameError::ControlChar(_))
        ));
        assert_eq!(check(""), Err(WindowsNameError::Empty));
    }

    #[test]
    fn trailing_dot_or_space_is_refused() {
        for bad in ["essay.", "essay ", "folder. ", "..."] {
            assert!(
                matches!(check(bad), Err(WindowsNameError::TrailingDotOrSpace(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn device_names_are_refused_in_any_case_and_with_extensions() {
        for bad in [
            "CON",
            "con",
            "Prn",
            "aux",
            "NUL",
            "nul.txt",
            "COM1",
            "com9.log",
            "LPT1",
            "lpt3.tar.gz",
            "COM¹",
            "NUL .txt",
            "CONIN$",
            "conout$.x",
        ] {
            let err = check(bad).unwrap_err();
            assert!(
                matches!(err, WindowsNameError::DeviceName(_)),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains("device name"), "{err}");
        }
        assert_eq!(
            DriveError::from(check("CON").unwrap_err()),
            DriveError::EINVAL
        );
    }

    #[test]
    fn names_compare_without_case() {
        let same = |a: &str, b: &str| same_name(OsStr::new(a), OsStr::new(b));
        assert!(same("Essay.DOCX", "essay.docx"));
        assert!(same("ÉTÉ.txt", "été.txt"));
        assert!(same("Ωmega", "ωMEGA"));
        assert!(!same("essay1.docx", "essay2.docx"));
        // ß has a two-letter upper case; Windows leaves it alone.
        assert!(!same("straße", "STRASSE"));
    }

    #[test]
    fn resolve_prefers_the_exact_name_then_a_case_variant() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Essay.docx"), b"x").unwrap();
        let r = |n: &str| resolve_in(dir.path(), OsStr::new(n)).unwrap();
        assert_eq!(r("Essay.docx"), Some("Essay.docx".into()));
        assert_eq!(r("ESSAY.DOCX"), Some("Essay.docx".into()));
        assert_eq!(r("new.txt"), None);
        // Two variants made on Linux: the exact one wins, else the first sorted. (A
        // case-insensitive file system, as on Windows, cannot hold both.)
        std::fs::write(dir.path().join("essay.docx"), b"y").unwrap();
        if std::fs::read_dir(dir.path()).unwrap().count() < 2 {
            return;
        }
        assert_eq!(r("essay.docx"), Some("essay.docx".into()));
        assert_eq!(r("ESSAY.docx"), Some("Essay.docx".into()));
    }

    #[test]
    fn versions_folder_and_office_owner_files_are_hidden() {
        assert!(is_hidden(ROOT, OsStr::new(".versions")));
        assert!(is_hidden(ROOT + 5, OsStr::new("~$essay.docx")));
        assert!(!is_hidden(ROOT + 5, OsStr::new(".versions")));
        assert!(!is_hidden(ROOT, OsStr::new("essay.docx")));
        assert!(!is_hidden(ROOT, OsStr::new(".ects-status.txt")));
    }

    /// A Drive over a temp folder that records which paths it versioned.
    struct Fixture {
        _dir: tempfile::TempDir,
        drive: Drive,
        taken: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl crate::drive::sink::VersionSink for Recorder {
        fn capture(
            &self,
            path: &crate::names::RelPath,
            source: &Path,
        ) -> std::result::Result<crate::store::Digest, crate::drive::sink::SinkError> {
            let bytes = std::fs::read(source).map_err(crate::drive::sink::SinkError::Read)?;
            self.0.lock().unwrap().push(path.to_string());
            Ok(crate::store::Digest::of(&bytes))
        }
        fn flush(&self) -> std::result::Result<(), crate::drive::sink::SinkError> {
            Ok(())
        }
        fn drain(&self, _: std::time::Duration) -> usize {
            0
        }
        fn pending(&self) -> usize {
            0
        }
        fn status_text(&self) -> String {
            String::new()
        }
    }

    fn fixture() -> Fixture {
        use crate::store::{MemStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let taken = std::sync::Arc::default();
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemStore::new());
        let source = std::sync::Arc::new(crate::drive::sink::StoreSource::new(
            store,
            crate::names::UserName::parse("kim").unwrap(),
        ));
        let drive = Drive::new(
            super::super::DriveOptions {
                files: dir.path().join("files"),
                index_file: dir.path().join("index.json"),
                versions_cache: dir.path().join("vcache"),
                versions_cache_bytes: 1 << 20,
            },
            std::sync::Arc::new(Recorder(std::sync::Arc::clone(&taken))),
            source,
        )
        .unwrap();
        Fixture {
            _dir: dir,
            drive,
            taken,
        }
    }

    impl Fixture {
        /// Creates (or, Windows-style, opens the existing case variant of) `name`,
        /// writes `data`, closes.
        fn save(&self, parent: Ino, name: &str, data: &[u8]) -> OsString {
            let name = self.drive.windows_name(parent, OsStr::new(name)).unwrap();
            let (_, opened) = self
                .drive
                .create(
                    parent,
                    &name,
                    0o644,
                    crate::drive::core::posix::O_WRONLY | crate::drive::core::posix::O_TRUNC,
                    Some(1),
                )
                .unwrap();
            self.drive.write(opened.fh, 0, data, false).unwrap();
            self.drive.flush(opened.fh, Some(1)).unwrap();
            self.drive.release(opened.fh).unwrap();
            name
        }
        fn rename(&self, from: &str, to: &str) {
            let from = self.drive.windows_name(ROOT, OsStr::new(from)).unwrap();
            let to = self.drive.windows_name(ROOT, OsStr::new(to)).unwrap();
            self.drive.rename(ROOT, &from, ROOT, &to, 0).unwrap();
        }
        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(self.drive.files())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    #[test]
    fn drive_names_keep_case_and_match_without_it() {
        let f = fixture();
        assert_eq!(
            f.save(ROOT, "Essay.docx", b"one"),
            OsString::from("Essay.docx")
        );
        // Saving "ESSAY.DOCX" writes the same file, under the name it already has.
        assert_eq!(
            f.save(ROOT, "ESSAY.DOCX", b"two"),
            OsString::from("Essay.docx")
        );
        assert_eq!(f.names(), vec!["Essay.docx"]);
        assert_eq!(
            std::fs::read(f.drive.files().join("Essay.docx")).unwrap(),
            b"two"
        );
        let entry = f.drive.lookup(
            ROOT,
            &f.drive
                .windows_name(ROOT, OsStr::new("essay.DOCX"))
                .unwrap(),
        );
        assert_eq!(entry.unwrap().attr.size, 3);
        // The virtual entries answer to any case too.
        assert_eq!(
            f.drive.windows_name(ROOT, OsStr::new(".VERSIONS")).unwrap(),
            OsString::from(".versions")
        );
        // Forbidden names: refused, nothing created.
        for bad in ["CON", "a:b.txt", "trailing. "] {
            assert_eq!(
                f.drive.windows_name(ROOT, OsStr::new(bad)),
                Err(DriveError::EINVAL),
                "{bad}"
            );
        }
        assert_eq!(f.names(), vec!["Essay.docx"]);
        assert_eq!(*f.taken.lock().unwrap(), vec!["Essay.docx", "Essay.docx"]);
    }

    #[test]
    fn office_save_sequence_versions_the_document_under_its_own_name() {
        // Word: write a temp file, move the document aside, move the temp file onto
        // the document's name (here typed in another case), delete the old one;
        // ~$ owner file alongside. One new version, of "Report.docx", and nothing
        // of the temp or owner files.
        let f = fixture();
        f.save(ROOT, "Report.docx", b"draft 1");
        f.save(ROOT, "~$Report.docx", b"owner");
        f.save(ROOT, "~WRD0001.tmp", b"draft 2");
        f.rename("report.docx", "~WRL0002.tmp");
        f.rename("~WRD0001.tmp", "REPORT.docx");
        let old = f
            .drive
            .windows_name(ROOT, OsStr::new("~wrl0002.TMP"))
            .unwrap();
        f.drive.unlink(ROOT, &old).unwrap();
        let owner = f
            .drive
            .windows_name(ROOT, OsStr::new("~$report.docx"))
            .unwrap();
        assert!(is_hidden(ROOT, &owner));
        f.drive.unlink(ROOT, &owner).unwrap();
        assert_eq!(f.names(), vec!["REPORT.docx"]);
        let taken = f.taken.lock().unwrap().clone();
        assert_eq!(taken.first().map(String::as_str), Some("Report.docx"));
        assert_eq!(taken.last().map(String::as_str), Some("REPORT.docx"));
        assert!(
            taken.iter().all(|p| !p.contains('~')),
            "temp and owner files are never versioned: {taken:?}"
        );
    }
}
