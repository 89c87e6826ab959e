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

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::names::{NameError, UserName};

mod owner;
mod password;

use owner::{current_uid, keep_owner, owner_of};
pub use password::{
    MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, check_new_password, check_password, hash_password,
};
use password::{dummy_hash, verify};

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
        let loaded = crate::sync::read(&self.loaded);
        let mut users: Vec<User> = loaded.users.iter().filter_map(to_user).collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    pub fn is_empty(&self) -> Result<bool, UsersError> {
        Ok(self.list()?.is_empty())
    }

    pub fn get(&self, name: &str) -> Result<Option<User>, UsersError> {
        self.refresh()?;
        let loaded = crate::sync::read(&self.loaded);
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
            let loaded = crate::sync::read(&self.loaded);
            loaded.users.iter().find(|r| r.name == name).cloned()
        };
        // An unknown name costs one argon2 check against a dummy hash, like a wrong
        // password does: the work done does not tell which names exist.
        let Some((record, user)) = record.and_then(|r| to_user(&r).map(|u| (r, u))) else {
            self.verify(dummy_hash(), password);
            return Ok(Auth::UnknownUser);
        };
        let tag = self.tag(name, password);
        let cached = crate::sync::lock(&self.verified)
            .get(name)
            .is_some_and(|t| *t == tag);
        if !cached {
            if !self.verify(&record.password_hash, password) {
                return Ok(Auth::WrongPassword);
            }
            crate::sync::lock(&self.verified).insert(name.to_owned(), tag);
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
            let mut recent = crate::sync::lock(&self.registrations);
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
            && let Some(times) = crate::sync::lock(&self.registrations).get_mut(&addr)
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
            // The owner-and-chown advice is for Unix; Windows has no uid to name.
            if cfg!(unix) && source.kind() == io::ErrorKind::PermissionDenied {
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
        if crate::sync::read(&self.loaded).stamp == stamp && stamp.is_some() {
            return Ok(());
        }
        let users = self.read_file()?.users;
        let mut loaded = crate::sync::write(&self.loaded);
        *loaded = Loaded { stamp, users };
        crate::sync::lock(&self.verified).clear();
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
        crate::private::create_dir_all(dir).map_err(self.io_err(dir))?;
        let lock = crate::private::open_options()
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

#[cfg(test)]
mod tests;
