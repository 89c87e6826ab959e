//! Password rules and argon2id: what a password may be, how it is hashed, how it is
//! checked (with the same work for names that do not exist).

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::UsersError;

/// Longest password accepted, in bytes (argon2 takes any length; this bounds work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Shortest password a person may choose (`user add`, `user passwd`, a class list,
/// registration), in characters. Generated passwords are longer.
pub const MIN_PASSWORD_CHARS: usize = 8;

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
pub(super) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"ects: no such user", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

pub(super) fn verify(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}
