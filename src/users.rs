//! User records and password checks.
//!
//! Users live in `<data>/users.toml` (mode 0600): name, role, an argon2id PHC string
//! (its own random salt per user) and a disabled flag. `ects user …` edits the file
//! under a lock and replaces it atomically; a running server notices the change on the
//! next request, so no restart is needed.
//!
//! Argon2 is slow on purpose (tens of milliseconds). Clients authenticate every request
//! with HTTP Basic, so after one successful check the server remembers a keyed hash of
//! the credentials (key: random per process, never stored) and answers repeats without
//! argon2. Any change to users.toml clears that memory.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::names::{NameError, UserName};

/// Longest password accepted, in bytes (argon2 takes any length; this bounds work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Shortest password a person may choose (`user add`, `user passwd`, a class list,
/// registration), in characters. Generated passwords are longer.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Accounts one address may create through registration per [`REGISTRATION_WINDOW`].
/// A shared lab PC registers a few students; a script registering hundreds is stopped.
pub const REGISTRATIONS_PER_ADDRESS: usize = 10;
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and writes only their own namespace.
    Student,
    /// Reads every namespace, writes their own.
    Teacher,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Student => "student",
            Role::Teacher => "teacher",
        })
    }
}

/// A user as the rest of the program sees it (no password material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: UserName,
    pub role: Role,
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    name: String,
    role: Role,
    password_hash: String,
    #[serde(default)]
    disabled: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<Record>,
}

/// One user for [`UserDb::add_many`].
pub struct NewUser {
    pub name: UserName,
    pub role: Role,
    pub password: String,
}

// By hand, so a password never reaches a log through `{:?}`.
impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The answer to a sign-in attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Ok(User),
    UnknownUser,
    WrongPassword,
    Disabled,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("user {existing} already exists, which differs from {name} only in case")]
    LookAlike { name: String, existing: String },
    #[error(
        "too many new accounts from this computer ({REGISTRATIONS_PER_ADDRESS} an hour); \
         ask a teacher or try again later"
    )]
    TooManyRegistrations,
    #[error("these users already exist: {}", .0.join(", "))]
    ExistMany(Vec<String>),
    #[error("user {0} appears twice in the list")]
    Duplicate(String),
    #[error("no user named {0}")]
    NotFound(String),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    PasswordTooLong,
    #[error("the password is shorter than {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("{path} is not a valid users file: {message}")]
    Corrupt { path: String, message: String },
    #[error("reading or writing {path}: {source}")]
    Io { path: String, source: io::Error },
    /// The file exists but this process may not read or replace it: typically
    /// `users.toml` left owned by root after `sudo ects user …` on an older version.
    #[error(
        "{path}: permission denied ({source}); this process runs as uid {uid}: give the file \
         back to the user the server runs as (e.g. `chown ects: {path}; chmod 600 {path}`) \
         or run `ects user …` as that user (`sudo -u ects ects user …`)"
    )]
    Permission {
        path: String,
        uid: u32,
        source: io::Error,
    },
    /// `ects user …` run by someone who may not give the new file the old one's owner.
    #[error(
        "{path} belongs to uid {owner}, not to you (uid {uid}): run this command as its \
         owner (`sudo -u <owner> ects user …`) or as root, so the server can still read it"
    )]
    NotOwner { path: String, owner: u32, uid: u32 },
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The user database of one data folder.
pub struct UserDb {
    path: PathBuf,
    lock_path: PathBuf,
    loaded: RwLock<Loaded>,
    verified: Mutex<HashMap<String, [u8; 32]>>,
    key: [u8; 32],
    /// When each address registered its recent accounts (in this process).
    registrations: Mutex<HashMap<IpAddr, Vec<Instant>>>,
    /// argon2 verifications run, for tests that check unknown names cost the same.
    password_checks: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Loaded {
    stamp: Option<Stamp>,
    users: Vec<Record>,
}

/// Identifies one state of users.toml on disk, to notice edits by other processes.
type Stamp = (SystemTime, u64, u64);

impl UserDb {
    /// Opens the user database of `data` (the file need not exist yet).
    pub fn open(data: &Path) -> Result<Self, UsersError> {
        let db = Self {
            path: data.join("users.toml"),
            lock_path: data.join("users.lock"),
            loaded: RwLock::default(),
            verified: Mutex::default(),
            key: rand::random(),
            registrations: Mutex::default(),
            password_checks: Default::default(),
        };
        db.refresh()?;
        Ok(db)
    }

    /// Every user, sorted by name.
    pub fn list(&self) -> Result<Vec<User>, UsersError> {
        self.refresh()?;
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let mut users: Vec<User> = loaded.users.iter().filter_map(to_user).collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    pub fn is_empty(&self) -> Result<bool, UsersError> {
        Ok(self.list()?.is_empty())
    }

    pub fn get(&self, name: &str) -> Result<Option<User>, UsersError> {
        self.refresh()?;
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        Ok(loaded
            .users
            .iter()
            .find(|r| r.name == name)
            .and_then(to_user))
    }

    /// Checks a name and password. Blocking (argon2 on a cache miss): call it from a
    /// blocking thread in async code.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<Auth, UsersError> {
        self.refresh()?;
        let record = {
            let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
            loaded.users.iter().find(|r| r.name == name).cloned()
        };
        // An unknown name costs one argon2 check against a dummy hash, like a wrong
        // password does: the work done does not tell which names exist.
        let Some((record, user)) = record.and_then(|r| to_user(&r).map(|u| (r, u))) else {
            self.verify(dummy_hash(), password);
            return Ok(Auth::UnknownUser);
        };
        let tag = self.tag(name, password);
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_some_and(|t| *t == tag);
        if !cached {
            if !self.verify(&record.password_hash, password) {
                return Ok(Auth::WrongPassword);
            }
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_owned(), tag);
        }
        if user.disabled {
            return Ok(Auth::Disabled);
        }
        Ok(Auth::Ok(user))
    }

    /// Adds a user. Fails if the name is taken.
    pub fn add(&self, name: &UserName, role: Role, password: &str) -> Result<User, UsersError> {
        UserName::parse_new(name.as_str())?;
        let hash = hash_password(password)?;
        self.edit(|file| {
            if let Some(r) = same_name(file, name.as_str()) {
                return Err(if r.name == name.as_str() {
                    UsersError::Exists(name.to_string())
                } else {
                    UsersError::LookAlike {
                        name: name.to_string(),
                        existing: r.name.clone(),
                    }
                });
            }
            file.users.push(Record {
                name: name.to_string(),
                role,
                password_hash: hash,
                disabled: false,
            });
            Ok(())
        })?;
        Ok(User {
            name: name.clone(),
            role,
            disabled: false,
        })
    }

    /// Adds many users at once: every password is hashed first, then one locked
    /// rewrite of users.toml adds them all, or none when any name is taken (or given
    /// twice), so a class list never ends up half imported.
    pub fn add_many(&self, new: &[NewUser]) -> Result<Vec<User>, UsersError> {
        let mut seen = std::collections::HashSet::new();
        for u in new {
            UserName::parse_new(u.name.as_str())?;
            if !seen.insert(u.name.as_str().to_ascii_lowercase()) {
                return Err(UsersError::Duplicate(u.name.to_string()));
            }
        }
        let records = new
            .iter()
            .map(|u| {
                Ok(Record {
                    name: u.name.to_string(),
                    role: u.role,
                    password_hash: hash_password(&u.password)?,
                    disabled: false,
                })
            })
            .collect::<Result<Vec<_>, UsersError>>()?;
        self.edit(|file| {
            let taken: Vec<String> = records
                .iter()
                .filter(|r| same_name(file, &r.name).is_some())
                .map(|r| r.name.clone())
                .collect();
            if !taken.is_empty() {
                return Err(UsersError::ExistMany(taken));
            }
            file.users.extend(records);
            Ok(())
        })?;
        Ok(new
            .iter()
            .map(|u| User {
                name: u.name.clone(),
                role: u.role,
                disabled: false,
            })
            .collect())
    }

    /// Registration (`--allow-registration`): the first sign-in with an unknown name
    /// claims it as a student, at most [`REGISTRATIONS_PER_ADDRESS`] per address and
    /// [`REGISTRATION_WINDOW`] (`from`: the caller's address, if known).
    pub fn register(
        &self,
        name: &UserName,
        password: &str,
        from: Option<IpAddr>,
    ) -> Result<User, UsersError> {
        check_new_password(password)?;
        if let Some(addr) = from {
            let mut recent = self.registrations.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let times = recent.entry(addr).or_default();
            times.retain(|t| now.duration_since(*t) < REGISTRATION_WINDOW);
            if times.len() >= REGISTRATIONS_PER_ADDRESS {
                return Err(UsersError::TooManyRegistrations);
            }
            // Taken before the (slow) add so parallel attempts cannot exceed the limit.
            times.push(now);
        }
        let result = self.add(name, Role::Student, password);
        if result.is_err()
            && let Some(addr) = from
            && let Some(times) = self
                .registrations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&addr)
        {
            times.pop();
        }
        result
    }

    /// Sets a new password and enables the user again.
    pub fn passwd(&self, name: &UserName, password: &str) -> Result<(), UsersError> {
        let hash = hash_password(password)?;
        self.edit(|file| {
            let record = find_mut(file, name)?;
            record.password_hash = hash;
            record.disabled = false;
            Ok(())
        })
    }

    /// Stops a user from signing in. Their stored work stays.
    pub fn disable(&self, name: &UserName) -> Result<(), UsersError> {
        self.edit(|file| {
            find_mut(file, name)?.disabled = true;
            Ok(())
        })
    }

    /// One argon2 check, counted. An over-long password is refused without hashing it
    /// (its length is the caller's own, not a hint about names).
    fn verify(&self, phc: &str, password: &str) -> bool {
        self.password_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        password.len() <= MAX_PASSWORD_BYTES && verify(phc, password)
    }

    /// How many password checks (argon2 verifications) this database has run.
    pub fn password_checks(&self) -> u64 {
        self.password_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn tag(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn io_err(&self, path: &Path) -> impl FnOnce(io::Error) -> UsersError {
        let path = path.display().to_string();
        move |source| {
            if source.kind() == io::ErrorKind::PermissionDenied {
                UsersError::Permission {
                    path,
                    uid: current_uid(),
                    source,
                }
            } else {
                UsersError::Io { path, source }
            }
        }
    }

    /// Re-reads users.toml if it changed since it was last read.
    fn refresh(&self) -> Result<(), UsersError> {
        let stamp = match fs::metadata(&self.path) {
            Ok(m) => Some(stamp_of(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io_err(&self.path)(e)),
        };
        if self.loaded.read().unwrap_or_else(|e| e.into_inner()).stamp == stamp && stamp.is_some() {
            return Ok(());
        }
        let users = self.read_file()?.users;
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        *loaded = Loaded { stamp, users };
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    fn read_file(&self) -> Result<UsersFile, UsersError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(UsersFile::default()),
            Err(e) => return Err(self.io_err(&self.path)(e)),
        };
        toml::from_str(&text).map_err(|e| UsersError::Corrupt {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Read-modify-write under an exclusive lock, replacing the file atomically.
    fn edit(
        &self,
        change: impl FnOnce(&mut UsersFile) -> Result<(), UsersError>,
    ) -> Result<(), UsersError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::store::private::create_dir_all(dir).map_err(self.io_err(dir))?;
        let lock = crate::store::private::open_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(self.io_err(&self.lock_path))?;
        lock.lock().map_err(self.io_err(&self.lock_path))?;
        // Root editing a data folder that belongs to the server's user must leave both
        // files to that user, or the next request (or registration) fails.
        let owner = owner_of(&self.path, dir).map_err(self.io_err(&self.path))?;
        if current_uid() == 0 {
            keep_owner(&lock, &self.lock_path, owner, None)?;
        }
        let mut file = self.read_file()?;
        change(&mut file)?;
        let text = toml::to_string(&file).map_err(|e| UsersError::Hash(e.to_string()))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".users.toml.")
            .tempfile_in(dir)
            .map_err(self.io_err(dir))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(self.io_err(tmp.path()))?;
        // tempfile creates files with mode 0600 already: hashes stay private. The
        // replacement keeps the owner, group and mode of the file it replaces.
        keep_owner(tmp.as_file(), &self.path, owner, owner.and_then(|o| o.mode))?;
        tmp.persist(&self.path)
            .map_err(|e| self.io_err(&self.path)(e.error))?;
        crate::store::sync_dir(dir).map_err(self.io_err(dir))?;
        drop(lock);
        self.refresh()
    }
}

/// Who owns users.toml (or, before it exists, the data folder), and its mode.
/// Only Unix has owners to keep.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(unix), allow(dead_code))]
struct Owner {
    uid: u32,
    gid: u32,
    /// Permission bits of the existing users.toml; `None` keeps the new file's 0600.
    mode: Option<u32>,
}

#[cfg(unix)]
fn owner_of(file: &Path, dir: &Path) -> io::Result<Option<Owner>> {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(file) {
        Ok(m) => Ok(Some(Owner {
            uid: m.uid(),
            gid: m.gid(),
            mode: Some(m.mode() & 0o7777),
        })),
        // A new file goes to the folder's owner, which only root may need to fix.
        Err(e) if e.kind() == io::ErrorKind::NotFound && current_uid() != 0 => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let m = fs::metadata(dir)?;
            Ok(Some(Owner {
                uid: m.uid(),
                gid: m.gid(),
                mode: None,
            }))
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn owner_of(_file: &Path, _dir: &Path) -> io::Result<Option<Owner>> {
    Ok(None)
}

/// Gives `file` (an open handle of the new `path`) the owner `owner` and mode `mode`.
/// Only root may give a file away: anyone else editing a file they do not own is
/// refused with a message that says whose it is.
#[cfg(unix)]
fn keep_owner(
    file: &fs::File,
    path: &Path,
    owner: Option<Owner>,
    mode: Option<u32>,
) -> Result<(), UsersError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, fchown};
    let err = |source: io::Error| UsersError::Io {
        path: path.display().to_string(),
        source,
    };
    let Some(owner) = owner else { return Ok(()) };
    let meta = file.metadata().map_err(err)?;
    if (meta.uid(), meta.gid()) != (owner.uid, owner.gid) {
        let uid = current_uid();
        if uid != 0 && meta.uid() != owner.uid {
            return Err(UsersError::NotOwner {
                path: path.display().to_string(),
                owner: owner.uid,
                uid,
            });
        }
        fchown(file, Some(owner.uid), Some(owner.gid)).map_err(err)?;
    }
    if let Some(mode) = mode {
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn keep_owner(
    _file: &fs::File,
    _path: &Path,
    _owner: Option<Owner>,
    _mode: Option<u32>,
) -> Result<(), UsersError> {
    Ok(())
}

fn current_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    #[cfg(unix)]
    return unsafe { libc::geteuid() };
    #[cfg(not(unix))]
    0
}

fn to_user(r: &Record) -> Option<User> {
    Some(User {
        name: UserName::parse(&r.name).ok()?,
        role: r.role,
        disabled: r.disabled,
    })
}

/// The user whose name equals `name` ignoring case (Windows treats them as one).
fn same_name<'a>(file: &'a UsersFile, name: &str) -> Option<&'a Record> {
    file.users
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
}

fn find_mut<'a>(file: &'a mut UsersFile, name: &UserName) -> Result<&'a mut Record, UsersError> {
    file.users
        .iter_mut()
        .find(|r| r.name == name.as_str())
        .ok_or_else(|| UsersError::NotFound(name.to_string()))
}

fn stamp_of(m: &fs::Metadata) -> Stamp {
    // The inode tells a replaced file from one edited in place within the same
    // mtime tick; Windows std has no stable file id, so there mtime and size decide.
    #[cfg(unix)]
    let id = std::os::unix::fs::MetadataExt::ino(m);
    #[cfg(not(unix))]
    let id = 0;
    (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), id)
}

/// Refuses a password [`hash_password`] would refuse, without the cost of hashing.
pub fn check_password(password: &str) -> Result<(), UsersError> {
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(UsersError::PasswordTooLong);
    }
    Ok(())
}

/// The rule for a password a person chooses: [`check_password`] and at least
/// [`MIN_PASSWORD_CHARS`] characters.
pub fn check_new_password(password: &str) -> Result<(), UsersError> {
    check_password(password)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UsersError::PasswordTooShort);
    }
    Ok(())
}

/// Hashes a password with argon2id and a fresh random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    check_password(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// A hash of nothing anyone knows, with the same parameters as real ones, checked
/// against for unknown names.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"ects: no such user", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

fn verify(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> UserName {
        UserName::parse(s).unwrap()
    }

    /// Issue 15 item 7: an unknown name must cost the same argon2 work as a wrong
    /// password, or response times tell which names exist.
    #[test]
    fn unknown_names_cost_one_password_check_like_wrong_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::open(dir.path()).unwrap();
        db.add(&name("asdf"), Role::Student, "right password")
            .unwrap();
        let cases = [
            ("asdf", "wrong password", Auth::WrongPassword),
            ("nobody", "wrong password", Auth::UnknownUser),
            ("ASDF", "right password", Auth::UnknownUser),
            ("not a valid name/", "x", Auth::UnknownUser),
        ];
        for (who, password, want) in cases {
            let before = db.password_checks();
            assert_eq!(db.authenticate(who, password).unwrap(), want, "{who}");
            assert_eq!(db.password_checks() - before, 1, "checks for {who:?}");
        }
    }

    #[test]
    fn add_authenticate_passwd_disable() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::open(dir.path()).unwrap();
        assert!(db.is_empty().unwrap());
        db.add(&name("asdf"), Role::Student, "pw1").unwrap();
        db.add(&name("teach"), Role::Teacher, "pw2").unwrap();
        assert!(matches!(
            db.add(&name("asdf"), Role::Student, "x"),
            Err(UsersError::Exists(_))
        ));
        assert!(
            matches!(db.authenticate("asdf", "pw1").unwrap(), Auth::Ok(u) if u.role == Role::Student)
        );
        // Cached path gives the same answers.
        assert!(matches!(
            db.authenticate("asdf", "pw1").unwrap(),
            Auth::Ok(_)
        ));
        assert_eq!(db.authenticate("asdf", "pw2").unwrap(), Auth::WrongPassword);
        assert_eq!(db.authenticate("nobody", "pw1").unwrap(), Auth::UnknownUser);

        // Another process (a second UserDb) changes the file: this one notices.
        let other = UserDb::open(dir.path()).unwrap();
        other.passwd(&name("asdf"), "new").unwrap();
        assert_eq!(db.authenticate("asdf", "pw1").unwrap(), Auth::WrongPassword);
        assert!(matches!(
            db.authenticate("asdf", "new").unwrap(),
            Auth::Ok(_)
        ));
        other.disable(&name("asdf")).unwrap();
        assert_eq!(db.authenticate("asdf", "new").unwrap(), Auth::Disabled);
        assert!(matches!(
            db.disable(&name("ghost")),
            Err(UsersError::NotFound(_))
        ));

        let listed = db.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[0].disabled);
        assert_eq!(listed[1].role, Role::Teacher);
    }

    #[test]
    fn file_keeps_no_plaintext_and_salts_differ() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::open(dir.path()).unwrap();
        db.add(&name("a"), Role::Student, "same-secret").unwrap();
        db.add(&name("b"), Role::Student, "same-secret").unwrap();
        let text = fs::read_to_string(dir.path().join("users.toml")).unwrap();
        assert!(!text.contains("same-secret"));
        let hashes: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("password_hash"))
            .collect();
        assert_eq!(hashes.len(), 2);
        assert!(hashes.iter().all(|h| h.contains("$argon2id$")));
        assert_ne!(hashes[0], hashes[1]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("users.toml"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "users.toml must not be readable by others");
        }
    }

    #[test]
    fn bad_passwords_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::open(dir.path()).unwrap();
        assert!(matches!(
            db.add(&name("a"), Role::Student, ""),
            Err(UsersError::EmptyPassword)
        ));
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(
            db.add(&name("a"), Role::Student, &long),
            Err(UsersError::PasswordTooLong)
        ));
        assert!(db.is_empty().unwrap());
        assert!(!dir.path().join("users.toml").exists());
    }

    #[test]
    fn add_many_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::open(dir.path()).unwrap();
        db.add(&name("taken"), Role::Student, "pw").unwrap();
        let new = |n: &str, pw: &str| NewUser {
            name: name(n),
            role: Role::Student,
            password: pw.into(),
        };
        let err = db
            .add_many(&[new("a", "1"), new("taken", "2"), new("b", "3")])
            .unwrap_err();
        assert!(
            matches!(&err, UsersError::ExistMany(v) if v == &["taken"]),
            "{err}"
        );
        assert!(matches!(
            db.add_many(&[new("a", "1"), new("a", "2")]),
            Err(UsersError::Duplicate(_))
        ));
        assert!(matches!(
            db.add_many(&[new("a", "1"), new("b", "")]),
            Err(UsersError::EmptyPassword)
        ));
        assert_eq!(
            db.list().unwrap().len(),
            1,
            "nothing was added by a refused batch"
        );

        let added = db.add_many(&[new("a", "1"), new("b", "2")]).unwrap();
        assert_eq!(added.len(), 2);
        assert!(matches!(db.authenticate("a", "1").unwrap(), Auth::Ok(_)));
        assert!(matches!(db.authenticate("b", "2").unwrap(), Auth::Ok(_)));
        assert_eq!(db.list().unwrap().len(), 3);
    }

    #[test]
    fn corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("users.toml"), "[[user]]\nname = 3\n").unwrap();
        let err = UserDb::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("not a valid users file"), "{err}");
    }
}
