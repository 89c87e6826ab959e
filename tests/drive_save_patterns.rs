//! How real programs save, through a real mount: each pattern must leave exactly the
//! right versions under the final name, and nothing under an ignored name.
//!
//! Every test here mounts a FUSE drive, so the suite is Unix-only; on Windows the
//! WinFsp drive is exercised by the GitHub Actions job (.github/workflows/).
#![cfg(unix)]

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::Command;

use support::drive::{Place, sorted};

fn sh(cwd: &std::path::Path, script: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .status()
        .unwrap();
    assert!(st.success(), "{script}");
}

#[test]
fn editors_save_patterns_leave_exactly_the_right_versions() {
    save_patterns(&[]);
}

/// The same with reads and writes going through the drive (the kernel's writeback
/// cache), as on kernels or accounts without passthrough.
#[test]
fn editors_save_patterns_without_kernel_passthrough() {
    save_patterns(&[("ECTS_NO_PASSTHROUGH", "1")]);
}

fn save_patterns(env: &[(&str, &str)]) {
    let place = Place::new();
    let m = place.mount_with(env);

    // Plain write + close, twice, then once more with the same content.
    fs::write(m.path("plain.txt"), b"first").unwrap();
    fs::write(m.path("plain.txt"), b"second").unwrap();
    fs::write(m.path("plain.txt"), b"second").unwrap();

    // Word: lock file, new content in ~WRD, original renamed aside to ~WRL, temp renamed
    // onto the name, old copy deleted, lock removed.
    fs::create_dir(m.path("Documents")).unwrap();
    let doc = m.path("Documents/essay.docx");
    fs::write(&doc, b"word v1").unwrap();
    fs::write(m.path("Documents/~$essay.docx"), b"owner lock").unwrap();
    fs::write(m.path("Documents/~WRD0001.tmp"), b"word v2").unwrap();
    fs::rename(&doc, m.path("Documents/~WRL0001.tmp")).unwrap();
    fs::rename(m.path("Documents/~WRD0001.tmp"), &doc).unwrap();
    fs::remove_file(m.path("Documents/~WRL0001.tmp")).unwrap();
    fs::remove_file(m.path("Documents/~$essay.docx")).unwrap();

    // LibreOffice: .~lock.*# lock file, content written to a temp file renamed over.
    let odt = m.path("Documents/report.odt");
    fs::write(&odt, b"lo v1").unwrap();
    fs::write(m.path("Documents/.~lock.report.odt#"), b"lock").unwrap();
    fs::write(m.path("Documents/lu4711abcd.tmp"), b"lo v2").unwrap();
    fs::rename(m.path("Documents/lu4711abcd.tmp"), &odt).unwrap();
    fs::remove_file(m.path("Documents/.~lock.report.odt#")).unwrap();

    // vim by hand: swap file, new content to a new file, renamed onto the name.
    fs::write(m.path("notes.md"), b"vim v1\n").unwrap();
    fs::write(m.path(".notes.md.swp"), b"swap").unwrap();
    fs::write(m.path("notes.md~"), b"vim v1\n").unwrap();
    fs::write(m.path("4913"), b"").unwrap();
    fs::remove_file(m.path("4913")).unwrap();
    fs::write(m.path(".notes.md.new.swx"), b"vim v2\n").unwrap();
    fs::rename(m.path(".notes.md.new.swx"), m.path("notes.md")).unwrap();
    fs::remove_file(m.path("notes.md~")).unwrap();
    fs::remove_file(m.path(".notes.md.swp")).unwrap();

    // The real vim, if installed: its own swap, backup and probe files.
    let have_vim = Command::new("vim").arg("--version").output().is_ok();
    if have_vim {
        fs::write(m.path("vimmed.txt"), b"line one\n").unwrap();
        let st = Command::new("vim")
            .args([
                "-u",
                "NONE",
                "-N",
                "-n",
                "-es",
                "-c",
                "normal Goline two",
                "-c",
                "wq",
            ])
            .arg(m.path("vimmed.txt"))
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("vim")
            .args([
                "-u",
                "NONE",
                "-N",
                "-es",
                "-c",
                "normal Goline three",
                "-c",
                "wq",
            ])
            .arg(m.path("vimmed.txt"))
            .status()
            .unwrap();
        assert!(st.success());
    }

    // `echo >>` appends, and `>` rewrites (shells dup and close the descriptor).
    sh(
        &m.mnt,
        "echo one > log.txt; echo two >> log.txt; echo three >> log.txt",
    );
    sh(&m.mnt, "echo fresh > log2.txt");

    // truncate(1) on a closed file, and truncate(2) by path.
    fs::write(m.path("t.bin"), b"0123456789").unwrap();
    sh(&m.mnt, "truncate -s 4 t.bin");
    let c = std::ffi::CString::new(m.path("t.bin").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid path string.
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 2) }, 0);

    // Two handles writing at once: one version, of the final content.
    {
        let a = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(m.path("both.txt"))
            .unwrap();
        let b = OpenOptions::new()
            .write(true)
            .open(m.path("both.txt"))
            .unwrap();
        a.write_all_at(b"AAAA", 0).unwrap();
        b.write_all_at(b"BBBB", 4).unwrap();
        drop(a);
        b.write_all_at(b"CC", 8).unwrap();
        drop(b);
    }

    // A file written in many small writes by one handle: one version.
    {
        let mut f = fs::File::create(m.path("chunks.txt")).unwrap();
        for i in 0..100 {
            write!(f, "{i},").unwrap();
        }
    }

    m.unmount();

    assert_eq!(place.stored("plain.txt"), sorted(&[b"first", b"second"]));
    assert_eq!(
        place.stored("Documents/essay.docx"),
        sorted(&[b"word v1", b"word v2"])
    );
    assert_eq!(
        place.stored("Documents/report.odt"),
        sorted(&[b"lo v1", b"lo v2"])
    );
    assert_eq!(
        place.stored("notes.md"),
        sorted(&[b"vim v1\n", b"vim v2\n"])
    );
    if have_vim {
        assert_eq!(
            place.stored("vimmed.txt"),
            sorted(&[
                b"line one\n",
                b"line one\nline two\n",
                b"line one\nline two\nline three\n"
            ])
        );
    }
    assert_eq!(
        place.stored("log.txt"),
        sorted(&[b"one\n", b"one\ntwo\n", b"one\ntwo\nthree\n"])
    );
    assert_eq!(place.stored("log2.txt"), sorted(&[b"fresh\n"]));
    assert_eq!(
        place.stored("t.bin"),
        sorted(&[b"0123456789", b"0123", b"01"])
    );
    assert_eq!(place.stored("both.txt"), sorted(&[b"AAAABBBBCC"]));
    let chunks: String = (0..100).map(|i| format!("{i},")).collect();
    assert_eq!(place.stored("chunks.txt"), sorted(&[chunks.as_bytes()]));

    // Nothing else: no version under any ignored or temporary name.
    let all = place.all_stored();
    let names: Vec<&String> = all.keys().collect();
    let mut expected = vec![
        "Documents/essay.docx",
        "Documents/report.odt",
        "both.txt",
        "chunks.txt",
        "log.txt",
        "log2.txt",
        "notes.md",
        "plain.txt",
        "t.bin",
    ];
    if have_vim {
        expected.push("vimmed.txt");
    }
    expected.sort();
    assert_eq!(names, expected);

    // Every file is still in the drive's folder, ignored ones included while they existed.
    assert_eq!(
        fs::read(place.backing().join("both.txt")).unwrap(),
        b"AAAABBBBCC"
    );
}

#[test]
fn ignored_files_stay_local_and_are_never_uploaded() {
    let place = Place::new();
    let m = place.mount();
    let names = [
        "~$thesis.docx",
        "~WRL0002.tmp",
        "build.TMP",
        ".~lock.sheet.ods#",
        ".main.c.swp",
        ".main.c.swx",
        ".DS_Store",
        "Thumbs.db",
        "desktop.ini",
        ".goutputstream-Q1W2E3",
    ];
    fs::create_dir(m.path("sub")).unwrap();
    for n in names {
        fs::write(m.path(n), b"scratch").unwrap();
        fs::write(m.path(&format!("sub/{n}")), b"scratch").unwrap();
    }
    fs::write(m.path("kept.txt"), b"kept").unwrap();
    for n in names {
        assert_eq!(fs::read(m.path(n)).unwrap(), b"scratch");
    }
    m.unmount();
    let all = place.all_stored();
    assert_eq!(all.keys().collect::<Vec<_>>(), vec!["kept.txt"]);
    for n in names {
        assert!(place.backing().join(n).exists(), "{n} kept locally");
    }
}
