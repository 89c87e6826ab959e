//! Random sequences of create/write/append/rename/unlink/truncate/mkdir/rename-folder
//! against the mounted drive and a simple in-memory model. After each sequence the
//! drive's files must equal the model's, and the store's versions of every path must be
//! exactly the contents the model closed there (the store keeps each content once).
//!
//! Every test here mounts a FUSE drive, so the suite is Unix-only; on Windows the
//! WinFsp drive is exercised by the GitHub Actions job (.github/workflows/).
#![cfg(unix)]

#[path = "../src/drive/core/tests/model_spec.rs"]
mod model_spec;
mod support;

use std::fs;
use std::io::Write;
use std::path::Path;

use model_spec::{DIRS, FILES, Model, Op, op};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::drive::{Mounted, Place, stored_versions, wait_for};

/// Applies `op` to the model and, when the model says it is valid, to the drive.
fn apply(m: &mut Model, root: &Path, op: &Op) {
    match op {
        Op::Write(i, bytes) => {
            let p = FILES[*i];
            if !m.parent_ok(p) {
                return;
            }
            fs::write(root.join(p), bytes).unwrap();
            m.files.insert(p.into(), bytes.clone());
            m.version(p);
        }
        Op::Append(i, bytes) => {
            let p = FILES[*i];
            if !m.files.contains_key(p) {
                return;
            }
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(root.join(p))
                .unwrap();
            f.write_all(bytes).unwrap();
            drop(f);
            m.files.get_mut(p).unwrap().extend_from_slice(bytes);
            m.version(p);
        }
        Op::Rename(a, b) => {
            let (from, to) = (FILES[*a], FILES[*b]);
            if from == to || !m.files.contains_key(from) || !m.parent_ok(to) {
                return;
            }
            fs::rename(root.join(from), root.join(to)).unwrap();
            let c = m.files.remove(from).unwrap();
            m.files.insert(to.into(), c);
            m.version(to);
        }
        Op::Unlink(i) => {
            let p = FILES[*i];
            if m.files.remove(p).is_some() {
                fs::remove_file(root.join(p)).unwrap();
            }
        }
        Op::Truncate(i, n) => {
            let p = FILES[*i];
            if !m.files.contains_key(p) {
                return;
            }
            let c =
                std::ffi::CString::new(root.join(p).into_os_string().into_encoded_bytes()).unwrap();
            // SAFETY: a valid path string.
            assert_eq!(unsafe { libc::truncate(c.as_ptr(), *n as i64) }, 0);
            m.files.get_mut(p).unwrap().resize(*n as usize, 0);
            m.version(p);
        }
        Op::Mkdir(i) => {
            let d = DIRS[*i];
            if m.dirs.insert(d.into()) {
                fs::create_dir(root.join(d)).unwrap();
            }
        }
        Op::RenameDir(a, b) => {
            let (from, to) = (DIRS[*a], DIRS[*b]);
            if from == to || !m.dirs.contains(from) || m.dirs.contains(to) {
                return;
            }
            fs::rename(root.join(from), root.join(to)).unwrap();
            m.dirs.remove(from);
            m.dirs.insert(to.into());
            let moved: Vec<String> = m
                .files
                .keys()
                .filter(|k| k.starts_with(&format!("{from}/")))
                .cloned()
                .collect();
            for old in moved {
                let new = format!("{to}/{}", &old[from.len() + 1..]);
                let c = m.files.remove(&old).unwrap();
                m.files.insert(new.clone(), c);
                m.version(&new);
            }
        }
    }
}

fn check(mount: &Mounted, place: &Place, case: &str, m: &Model) {
    let root = mount.path(case);
    for p in FILES {
        match m.files.get(*p) {
            Some(c) => assert_eq!(&fs::read(root.join(p)).unwrap(), c, "{p}"),
            None => assert!(!root.join(p).exists(), "{p} should not exist"),
        }
    }
    // Wait until every capture is delivered to the store.
    wait_for("the spool to be idle", || {
        fs::read_to_string(mount.path(".ects-status.txt"))
            .unwrap()
            .contains("nothing, every saved version")
    });
    for p in FILES {
        let want: Vec<Vec<u8>> = m
            .versions
            .get(*p)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        assert_eq!(
            stored_versions(&place.data(), &format!("{case}/{p}")),
            want,
            "versions of {p}"
        );
    }
}

#[test]
fn random_operations_match_the_model() {
    let place = Place::new();
    let mount = place.mount();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let case_no = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&prop::collection::vec(op(), 1..30), |ops| {
        let n = case_no.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let case = format!("case-{n}");
        fs::create_dir(mount.path(&case)).unwrap();
        let mut model = Model::default();
        for o in &ops {
            apply(&mut model, &mount.path(&case), o);
        }
        check(&mount, &place, &case, &model);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    mount.unmount();
}
