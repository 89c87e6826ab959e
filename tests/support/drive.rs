//! The FUSE drive tests' fixtures (Unix only): a real `ects mount` in a temp folder, on
//! an embedded store, unmounted by a Drop guard even when a test panics.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use super::process::wait_for;
use super::process::{BIN, temp_dir};

pub const USER: &str = "kim";

/// A folder holding a drive's store (`data`), cache and mountpoint.
pub struct Place {
    pub dir: tempfile::TempDir,
}

impl Place {
    pub fn new() -> Self {
        Self { dir: temp_dir() }
    }
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
    /// The backing folder: the drive's files while unmounted.
    pub fn backing(&self) -> PathBuf {
        self.cache().join("files")
    }

    pub fn mount(&self) -> Mounted {
        self.mount_with(&[])
    }

    pub fn mount_with(&self, env: &[(&str, &str)]) -> Mounted {
        self.spawn(
            &["--data", &self.data().to_string_lossy(), "--user", USER],
            env,
        )
    }

    /// A drive that uploads to a server, password from `ECTS_PASSWORD`.
    pub fn mount_server(&self, url: &str, user: &str, password: &str) -> Mounted {
        self.spawn(
            &["--server", url, "--user", user],
            &[("ECTS_PASSWORD", password)],
        )
    }

    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Mounted {
        let mnt = self.mnt();
        let mut cmd = Command::new(BIN);
        cmd.arg("mount")
            .arg(&mnt)
            .arg("--cache")
            .arg(self.cache())
            .args(args)
            .arg("--drain-timeout")
            .arg("60")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ECTS_") {
                cmd.env_remove(key);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut m = Mounted {
            child: Some(child),
            keep_mount: false,
            mnt,
            data: self.data(),
        };
        m.wait_mounted();
        m
    }

    /// Every stored version of `path` (content), read straight from the store's layout.
    pub fn stored(&self, path: &str) -> Vec<Vec<u8>> {
        stored_versions(&self.data(), path)
    }

    /// Every path with at least one version, mapped to its contents, sorted.
    pub fn all_stored(&self) -> BTreeMap<String, Vec<Vec<u8>>> {
        let root = self.data().join("uploads").join(USER);
        let mut out = BTreeMap::new();
        walk_store(&root, &root, &mut out);
        out
    }
}

fn walk_store(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<Vec<u8>>>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut has_versions = false;
    for e in entries.flatten() {
        if e.file_type().unwrap().is_dir() {
            walk_store(root, &e.path(), out);
        } else {
            has_versions = true;
        }
    }
    if has_versions {
        let rel = dir
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.insert(
            rel.clone(),
            stored_versions(&root.join("..").join(".."), &rel),
        );
    }
}

/// Contents of every version of `path` in a store, sorted (the store keeps one version
/// per distinct content, so this is a set).
pub fn stored_versions(data: &Path, path: &str) -> Vec<Vec<u8>> {
    stored_versions_of(data, USER, path)
}

/// [`stored_versions`] of any user.
pub fn stored_versions_of(data: &Path, user: &str, path: &str) -> Vec<Vec<u8>> {
    let dir = data.join("uploads").join(user).join(path);
    let mut out: Vec<Vec<u8>> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| fs::read(e.path()).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

pub fn sorted(items: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = items.iter().map(|b| b.to_vec()).collect();
    v.sort();
    v.dedup();
    v
}

pub fn is_mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

/// A running drive. Dropping it unmounts and kills the process.
pub struct Mounted {
    child: Option<Child>,
    keep_mount: bool,
    pub mnt: PathBuf,
    pub data: PathBuf,
}

impl Mounted {
    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if is_mounted(&self.mnt) && self.mnt.join(".versions").exists() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().unwrap()
            {
                panic!("ects mount exited before mounting: {status}");
            }
            assert!(Instant::now() < deadline, "the drive did not mount in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal`, waits for the process to end, returns its status and stdout.
    pub fn stop_with(mut self, signal: i32) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = wait_child(&mut child);
        (out.0, out.1)
    }

    /// Clean unmount (SIGTERM): the drive drains every version into the store.
    pub fn unmount(self) -> String {
        let (status, out) = self.stop_with(libc::SIGTERM);
        assert!(status.success(), "ects mount failed: {status}; {out}");
        out
    }

    /// `fusermount3 -u`, as a student's file manager would; waits for the process.
    pub fn fusermount_u(mut self) -> (ExitStatus, String) {
        fusermount_u(&self.mnt);
        let mut child = self.child.take().unwrap();
        wait_child(&mut child)
    }

    /// SIGKILL: the drive dies; the mount is left stale.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        // Leave the stale mount for the caller's guard to clean up.
        self.keep_mount = true;
    }
}

/// `fusermount3 -u MNT`, as a student's file manager would; panics if it fails.
pub fn fusermount_u(mnt: &Path) {
    let st = Command::new("fusermount3")
        .arg("-u")
        .arg(mnt)
        .status()
        .expect("running fusermount3");
    assert!(st.success(), "fusermount3 -u {} failed", mnt.display());
}

fn wait_child(child: &mut Child) -> (ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            if let Some(mut s) = child.stdout.take() {
                use std::io::Read;
                s.read_to_string(&mut out).unwrap();
            }
            return (status, out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ects mount did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.keep_mount && is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Unmounts a stale mountpoint when dropped.
pub struct StaleGuard(pub PathBuf);

impl Drop for StaleGuard {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}
