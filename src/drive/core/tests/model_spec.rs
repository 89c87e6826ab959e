//! The drive's reference model, shared by the in-process test
//! (`src/drive/core/tests/model.rs`) and the mounted one (`tests/drive_model.rs`):
//! the paths, the operations and their strategy, and the model's state. Each test
//! applies the operations its own way (core calls or file system calls). Only std and
//! proptest here: the file is compiled into both crates.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

pub const FILES: &[&str] = &["a.txt", "b.md", "c.tmp", "d/a.txt", "d/e.txt", "e/x.txt"];
pub const DIRS: &[&str] = &["d", "e"];

#[derive(Debug, Clone)]
pub enum Op {
    Write(usize, Vec<u8>),
    Append(usize, Vec<u8>),
    Rename(usize, usize),
    Unlink(usize),
    Truncate(usize, u64),
    Mkdir(usize),
    RenameDir(usize, usize),
}

pub fn op() -> impl Strategy<Value = Op> {
    let f = 0..FILES.len();
    let d = 0..DIRS.len();
    let bytes = prop::collection::vec(any::<u8>(), 1..64);
    prop_oneof![
        4 => (f.clone(), bytes.clone()).prop_map(|(i, b)| Op::Write(i, b)),
        2 => (f.clone(), bytes).prop_map(|(i, b)| Op::Append(i, b)),
        2 => (f.clone(), f.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => f.clone().prop_map(Op::Unlink),
        1 => (f, 0u64..80).prop_map(|(i, n)| Op::Truncate(i, n)),
        2 => d.clone().prop_map(Op::Mkdir),
        1 => (d.clone(), d).prop_map(|(a, b)| Op::RenameDir(a, b)),
    ]
}

/// `*.tmp` is on the ignore list: kept, never versioned.
pub fn ignored(path: &str) -> bool {
    path.ends_with(".tmp")
}

#[derive(Default)]
pub struct Model {
    pub dirs: BTreeSet<String>,
    pub files: BTreeMap<String, Vec<u8>>,
    pub versions: BTreeMap<String, BTreeSet<Vec<u8>>>,
}

impl Model {
    pub fn parent_ok(&self, path: &str) -> bool {
        match path.rsplit_once('/') {
            Some((dir, _)) => self.dirs.contains(dir),
            None => true,
        }
    }

    /// The file at `path` was closed after a change: its content is a version.
    pub fn version(&mut self, path: &str) {
        if !ignored(path) {
            let c = self.files[path].clone();
            self.versions.entry(path.to_owned()).or_default().insert(c);
        }
    }
}
