//! Real tools inside the drive: `git clone` of a local repository and `tar x` of a real
//! source tree must succeed and compare equal to their source.
//!
//! Every test here mounts a FUSE drive, so the suite is Unix-only; on Windows the
//! WinFsp drive is exercised by the GitHub Actions job (.github/workflows/).
#![cfg(unix)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::drive::Place;

fn run(cwd: &Path, cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", cwd)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts two trees hold the same names, contents, symlinks and executable bits.
fn assert_same_tree(a: &Path, b: &Path, skip: &[&str]) -> usize {
    let mut count = 0;
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !skip.contains(&n.as_str()))
            .collect();
        v.sort();
        v
    };
    let (na, nb) = (names(a), names(b));
    assert_eq!(na, nb, "entries of {} vs {}", a.display(), b.display());
    for n in na {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pa.display());
        if ma.is_dir() {
            count += assert_same_tree(&pa, &pb, &[]);
        } else if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
            count += 1;
        } else {
            assert_eq!(
                fs::read(&pa).unwrap(),
                fs::read(&pb).unwrap(),
                "{}",
                pa.display()
            );
            assert_eq!(
                ma.permissions().mode() & 0o111,
                mb.permissions().mode() & 0o111,
                "exec bits of {}",
                pa.display()
            );
            count += 1;
        }
    }
    count
}

/// A real source tree: the tokio crate from cargo's registry if present (hundreds of
/// files), else this project's own sources.
fn source_tree() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home
        && let Ok(regs) = fs::read_dir(home.join("registry/src"))
    {
        for reg in regs.flatten() {
            let Ok(crates) = fs::read_dir(reg.path()) else {
                continue;
            };
            let mut tokio: Vec<PathBuf> = crates
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("tokio-1."))
                })
                .collect();
            tokio.sort();
            if let Some(t) = tokio.pop() {
                return t;
            }
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn tar_x_of_a_source_tree_compares_equal() {
    let place = Place::new();
    let src = source_tree();
    let tarball = place.dir.path().join("src.tar");
    run(
        src.parent().unwrap(),
        "tar",
        &[
            "cf",
            tarball.to_str().unwrap(),
            src.file_name().unwrap().to_str().unwrap(),
        ],
    );
    let m = place.mount();
    run(&m.mnt, "tar", &["xf", tarball.to_str().unwrap()]);
    let extracted = m.path(src.file_name().unwrap().to_str().unwrap());
    let n = assert_same_tree(&src, &extracted, &[]);
    assert!(n > 10, "only {n} files compared");
    m.unmount();
    // And every file of it is versioned.
    let stored = place.all_stored();
    let top = src.file_name().unwrap().to_string_lossy().into_owned();
    let versioned = stored.keys().filter(|k| k.starts_with(&top)).count();
    assert!(versioned >= n - 5, "{versioned} of {n} files versioned");
}

#[test]
fn git_clone_of_a_local_repository_compares_equal() {
    let place = Place::new();
    let repo = place.dir.path().join("repo");
    fs::create_dir_all(repo.join("src/nested")).unwrap();
    run(&repo, "git", &["init", "-q", "-b", "main"]);
    run(&repo, "git", &["config", "user.email", "t@example.org"]);
    run(&repo, "git", &["config", "user.name", "T"]);
    for round in 0..3 {
        for i in 0..20 {
            fs::write(
                repo.join(format!("src/nested/f{i}.rs")),
                format!("// round {round}\nfn f{i}() {{}}\n").repeat(i + 1),
            )
            .unwrap();
        }
        fs::write(repo.join("README.md"), format!("round {round}\n")).unwrap();
        fs::write(repo.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(repo.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("README.md", repo.join("link")).ok();
        run(&repo, "git", &["add", "-A"]);
        run(
            &repo,
            "git",
            &["commit", "-q", "-m", &format!("round {round}")],
        );
    }
    let m = place.mount();
    run(
        &m.mnt,
        "git",
        &["clone", "-q", repo.to_str().unwrap(), "clone"],
    );
    let clone = m.path("clone");
    assert_same_tree(&repo, &clone, &[".git"]);
    run(&clone, "git", &["fsck", "--strict", "--no-progress"]);
    assert_eq!(run(&clone, "git", &["status", "--porcelain"]), "");
    assert_eq!(
        run(&clone, "git", &["log", "--format=%s"]),
        "round 2\nround 1\nround 0\n"
    );
    // Work inside the clone: commit, branch, gc.
    fs::write(clone.join("README.md"), "changed in the drive\n").unwrap();
    run(
        &clone,
        "git",
        &[
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=A",
            "commit",
            "-qam",
            "edit",
        ],
    );
    run(&clone, "git", &["gc", "-q"]);
    run(&clone, "git", &["fsck", "--no-progress"]);
    m.unmount();
    assert!(
        place
            .stored("clone/README.md")
            .contains(&b"changed in the drive\n".to_vec())
    );
}
