//! `.versions` and `.ects-status.txt` through a real mount.
//!
//! Every test here mounts a FUSE drive, so the suite is Unix-only; on Windows the
//! WinFsp drive is exercised by the GitHub Actions job (.github/workflows/).
#![cfg(unix)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use support::drive::{Place, USER, wait_for};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn erofs<T: std::fmt::Debug>(r: std::io::Result<T>) {
    let e = r.expect_err("a change inside .versions must fail");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
}

#[test]
fn versions_lists_and_opens_every_version_and_refuses_changes() {
    let place = Place::new();
    let m = place.mount();
    fs::create_dir_all(m.path("Class 7b/Übung")).unwrap();
    let file = m.path("Class 7b/Übung/Aufsatz [final].docx");
    let contents: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("version {i} ").repeat(1000 + i).into_bytes())
        .collect();
    for c in &contents {
        fs::write(&file, c).unwrap();
    }
    fs::write(m.path("gone.txt"), b"deleted later").unwrap();

    let vdir = m.path(".versions/Class 7b/Übung/Aufsatz [final].docx");
    // Versions are stored in the background; new ones show up within seconds.
    wait_for("five versions in .versions", || {
        vdir.exists() && fs::read_dir(&vdir).unwrap().count() == 5
    });
    let listed = names(&vdir);
    let mut read_back = Vec::new();
    for name in &listed {
        // <YYYY-MM-DD_HH-MM-SS>_<sha8>.docx
        assert_eq!(name.len(), 19 + 1 + 8 + 5, "{name}");
        assert!(name.ends_with(".docx"), "{name}");
        let p = vdir.join(name);
        let meta = fs::metadata(&p).unwrap();
        let bytes = fs::read(&p).unwrap();
        assert_eq!(meta.len(), bytes.len() as u64);
        assert!(meta.permissions().mode() & 0o222 == 0, "read-only");
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        assert!(
            name.contains(&format!("_{}.", &sha[..8])),
            "{name} vs {sha}"
        );
        // mtime is the version's stored_at: the store file's mtime.
        let stored = place
            .data()
            .join("uploads")
            .join(USER)
            .join("Class 7b/Übung/Aufsatz [final].docx")
            .join(format!("{sha}.docx"));
        let stored_mtime = fs::metadata(&stored).unwrap().modified().unwrap();
        assert_eq!(meta.modified().unwrap(), stored_mtime);
        read_back.push(bytes);
    }
    read_back.sort();
    let mut want = contents.clone();
    want.sort();
    assert_eq!(read_back, want, "every version byte for byte");

    // A deleted file stays in .versions.
    wait_for("gone.txt in .versions", || {
        m.path(".versions/gone.txt").exists()
    });
    fs::remove_file(m.path("gone.txt")).unwrap();
    assert!(!m.path("gone.txt").exists());
    let gone = names(&m.path(".versions/gone.txt"));
    assert_eq!(gone.len(), 1);
    assert_eq!(
        fs::read(m.path(".versions/gone.txt").join(&gone[0])).unwrap(),
        b"deleted later"
    );

    // Every change inside .versions fails with EROFS and changes nothing.
    let one = vdir.join(&listed[0]);
    erofs(fs::write(&one, b"overwrite"));
    erofs(fs::OpenOptions::new().append(true).open(&one));
    erofs(fs::remove_file(&one));
    erofs(fs::rename(&one, vdir.join("renamed.docx")));
    erofs(fs::rename(&one, m.path("out.docx")));
    erofs(fs::rename(m.path("Class 7b"), m.path(".versions/in")));
    erofs(fs::set_permissions(&one, fs::Permissions::from_mode(0o666)));
    erofs(fs::write(vdir.join("new.docx"), b"x"));
    erofs(fs::create_dir(m.path(".versions/newdir")));
    erofs(fs::remove_dir(m.path(".versions/gone.txt")));
    erofs(fs::remove_dir_all(m.path(".versions")));
    erofs(fs::rename(m.path(".versions"), m.path("v2")));
    erofs(fs::write(m.path(".ects-status.txt"), b"x"));
    let f = fs::File::open(&one).unwrap();
    erofs(f.set_modified(SystemTime::UNIX_EPOCH));
    drop(f);
    assert_eq!(names(&vdir), listed);
    assert_eq!(fs::read(&one).unwrap(), {
        let mut v = read_back.clone();
        v.retain(|b| {
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b));
            listed[0].contains(&sha[..8])
        });
        v.remove(0)
    });

    // The status file is readable and says how things stand.
    let status = fs::read_to_string(m.path(".ects-status.txt")).unwrap();
    assert!(status.contains("Waiting to upload"), "{status}");
    assert!(status.contains("Last error:        none"), "{status}");
    assert!(status.contains("Failed uploads:    none"), "{status}");

    m.unmount();
    // Nothing inside the store changed either.
    assert_eq!(place.stored("Class 7b/Übung/Aufsatz [final].docx").len(), 5);
    assert_eq!(place.stored("gone.txt"), vec![b"deleted later".to_vec()]);
    assert!(
        place
            .stored("Class 7b/Übung/Aufsatz [final].docx/renamed.docx")
            .is_empty()
    );
}

/// Issue 14: the kernel now remembers that a name is missing in the drive's own folders.
/// A name asked for before it exists must still appear once created or renamed there,
/// and in `.versions` once its first version is stored (there it is never remembered).
#[test]
fn a_name_asked_for_before_it_exists_shows_once_it_does() {
    let place = Place::new();
    let m = place.mount();
    let file = m.path("late.txt");
    let version_dir = m.path(".versions/late.txt");
    for _ in 0..3 {
        assert!(!file.exists());
        assert!(!version_dir.exists());
    }
    fs::write(&file, b"now here").unwrap();
    assert_eq!(fs::read(&file).unwrap(), b"now here");
    wait_for("late.txt in .versions", || version_dir.exists());
    let moved = m.path("moved.txt");
    assert!(!moved.exists());
    fs::rename(&file, &moved).unwrap();
    assert_eq!(fs::read(&moved).unwrap(), b"now here");
    assert!(!file.exists());
}
