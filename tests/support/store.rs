//! Reading a server's data folder directly, to check what reached the disk.

use std::fs;
use std::path::{Path, PathBuf};

/// Every file and folder under `dir` with its size, to prove a request wrote nothing.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("reading a dir") {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            let rel = entry
                .path()
                .strip_prefix(dir)
                .expect("an entry under dir")
                .to_path_buf();
            if meta.is_dir() {
                stack.push(entry.path());
                out.push((rel, 0));
            } else {
                out.push((rel, meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// Every stored version file under `<data>/uploads`, as `/`-joined paths relative to
/// `uploads/` (SPEC §2's layout, the same on every platform).
pub fn stored_versions(data: &Path) -> Vec<String> {
    let uploads = data.join("uploads");
    if !uploads.exists() {
        return Vec::new();
    }
    snapshot(&uploads)
        .into_iter()
        .filter(|(p, _)| uploads.join(p).is_file())
        .map(|(p, _)| slash_path(&p))
        .collect()
}

/// A relative path with `/` between its components on every platform (Windows'
/// `to_string_lossy` gives `\`), as SPEC paths are written.
pub fn slash_path(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Entries left in `<data>/tmp` (uploads in flight); empty when nothing is pending.
pub fn temp_files(data: &Path) -> Vec<String> {
    match fs::read_dir(data.join("tmp")) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ects::store::Digest::of(bytes).to_hex()
}
