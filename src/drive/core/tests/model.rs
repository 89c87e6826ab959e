//! The drive's reference model (the same as `tests/drive_model.rs`), run in process
//! against [`Drive`] with the recording sink: the calls a kernel makes for each
//! operation, thousands of random sequences in seconds. After each sequence the backing
//! folder must hold the model's files, and the versions captured at every path must be
//! exactly the contents the model closed there. The mounted test stays as the
//! end-to-end check; shrunk failures are pinned in
//! `proptest-regressions/drive/core/tests/model.txt` and replayed first.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;

use proptest::prelude::*;

#[path = "model_spec.rs"]
mod spec;

use super::{Fixture, W, fixture};
use crate::drive::core::{Ino, ROOT, posix};
use spec::{DIRS, FILES, Model, Op, op};

/// The folder and name of `path`, looked up as the kernel would.
fn parent_of(f: &Fixture, path: &str) -> (Ino, String) {
    match path.rsplit_once('/') {
        Some((dir, name)) => {
            let e = f.drive.lookup(ROOT, OsStr::new(dir)).unwrap();
            (e.attr.ino, name.to_owned())
        }
        None => (ROOT, path.to_owned()),
    }
}

fn ino_of(f: &Fixture, path: &str) -> Ino {
    let (parent, name) = parent_of(f, path);
    f.drive.lookup(parent, OsStr::new(&name)).unwrap().attr.ino
}

/// Applies `op` to the model and, when the model says it is valid, to the drive,
/// through the calls the kernel makes for it.
fn apply(m: &mut Model, f: &Fixture, op: &Op) {
    match op {
        Op::Write(i, bytes) => {
            // open(O_WRONLY|O_CREAT|O_TRUNC), write, close.
            let p = FILES[*i];
            if !m.parent_ok(p) {
                return;
            }
            let fh = if m.files.contains_key(p) {
                let ino = ino_of(f, p);
                let fh = f.drive.open(ino, W, Some(1)).unwrap().fh;
                f.drive
                    .setattr(
                        ino,
                        Some(fh),
                        crate::drive::core::SetAttr {
                            size: Some(0),
                            ..Default::default()
                        },
                    )
                    .unwrap();
                fh
            } else {
                let (parent, name) = parent_of(f, p);
                f.create(parent, &name).1
            };
            f.write(fh, 0, bytes);
            f.close(fh);
            m.files.insert(p.into(), bytes.clone());
            m.version(p);
        }
        Op::Append(i, bytes) => {
            let p = FILES[*i];
            if !m.files.contains_key(p) {
                return;
            }
            let ino = ino_of(f, p);
            let fh = f.drive.open(ino, W | posix::O_APPEND, Some(1)).unwrap().fh;
            let size = f.drive.getattr(ino, Some(fh)).unwrap().attr.size;
            f.write(fh, size, bytes);
            f.close(fh);
            m.files.get_mut(p).unwrap().extend_from_slice(bytes);
            m.version(p);
        }
        Op::Rename(a, b) => {
            let (from, to) = (FILES[*a], FILES[*b]);
            if from == to || !m.files.contains_key(from) || !m.parent_ok(to) {
                return;
            }
            let (fp, fname) = parent_of(f, from);
            let (tp, tname) = parent_of(f, to);
            f.drive
                .rename(fp, OsStr::new(&fname), tp, OsStr::new(&tname), 0)
                .unwrap();
            let c = m.files.remove(from).unwrap();
            m.files.insert(to.into(), c);
            m.version(to);
        }
        Op::Unlink(i) => {
            let p = FILES[*i];
            if m.files.remove(p).is_some() {
                let (parent, name) = parent_of(f, p);
                f.drive.unlink(parent, OsStr::new(&name)).unwrap();
            }
        }
        Op::Truncate(i, n) => {
            // truncate(2) by path: no handle.
            let p = FILES[*i];
            if !m.files.contains_key(p) {
                return;
            }
            let ino = ino_of(f, p);
            f.drive
                .setattr(
                    ino,
                    None,
                    crate::drive::core::SetAttr {
                        size: Some(*n),
                        ..Default::default()
                    },
                )
                .unwrap();
            m.files.get_mut(p).unwrap().resize(*n as usize, 0);
            m.version(p);
        }
        Op::Mkdir(i) => {
            let d = DIRS[*i];
            if m.dirs.insert(d.into()) {
                f.drive.mkdir(ROOT, OsStr::new(d), 0o755).unwrap();
            }
        }
        Op::RenameDir(a, b) => {
            let (from, to) = (DIRS[*a], DIRS[*b]);
            if from == to || !m.dirs.contains(from) || m.dirs.contains(to) {
                return;
            }
            f.drive
                .rename(ROOT, OsStr::new(from), ROOT, OsStr::new(to), 0)
                .unwrap();
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

fn check(f: &Fixture, m: &Model) -> std::result::Result<(), TestCaseError> {
    let files = f.root.join("files");
    for p in FILES {
        match m.files.get(*p) {
            Some(c) => prop_assert_eq!(&std::fs::read(files.join(p)).unwrap(), c, "{}", p),
            None => prop_assert!(!files.join(p).exists(), "{} should not exist", p),
        }
    }
    let mut taken: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for (path, bytes) in f.rec.taken() {
        taken.entry(path).or_default().insert(bytes);
    }
    // Every path, not only FILES: a renamed folder moves files to names outside it.
    prop_assert_eq!(&taken, &m.versions);
    Ok(())
}

/// Cases per run: many, since one takes well under a millisecond.
const CASES: u32 = 2000;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::SourceParallel("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_match_the_model_in_process(ops in prop::collection::vec(op(), 1..30)) {
        let f = fixture();
        let mut model = Model::default();
        for o in &ops {
            apply(&mut model, &f, o);
        }
        check(&f, &model)?;
    }
}
