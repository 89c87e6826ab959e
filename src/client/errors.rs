//! What can go wrong talking to a server, worded for the person at the keyboard: each
//! message says which server, what failed and what to try.

use super::upload::{ErrorClass, UploadError};
use crate::store::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Missing or bad settings (no server, no user, unreadable password file, bad CA file).
    #[error("{0}")]
    Config(String),
    /// `reason` is a whole sentence ([`super::words::transport_failure`]).
    #[error("{reason}")]
    Unreachable { server: String, reason: String },
    #[error(
        "the ects server at {server} refused user {user:?}: wrong user name or password, or the account is disabled (check --user / ECTS_USER and the password; ask your teacher)"
    )]
    Auth { server: String, user: String },
    #[error("the ects server at {server} refused the request: {message}")]
    Forbidden { server: String, message: String },
    #[error("not found on the server")]
    NotFound,
    #[error("{}", super::words::http_error(.server, *.status, .message))]
    Refused {
        server: String,
        status: u16,
        message: String,
    },
    #[error("{}", super::words::http_error(.server, *.status, .message))]
    Server {
        server: String,
        status: u16,
        message: String,
    },
    #[error("the ects server at {server} sent an answer ects does not understand: {message}")]
    Protocol { server: String, message: String },
    #[error(
        "the download does not match its SHA-256 (expected {expected}, received {actual}); nothing was kept"
    )]
    HashMismatch { expected: Digest, actual: Digest },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl ClientError {
    /// The one retry classification (shared with the spool's [`UploadError`]).
    ///
    /// [`UploadError`]: super::UploadError
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::Unreachable { .. } | ClientError::Server { .. } => ErrorClass::Transient,
            ClientError::Refused { status, .. } => UploadError::class_of(*status),
            ClientError::Auth { .. } => ErrorClass::NeedsCredentials,
            ClientError::Config(_)
            | ClientError::Forbidden { .. }
            | ClientError::NotFound
            | ClientError::Protocol { .. }
            | ClientError::HashMismatch { .. }
            | ClientError::Io { .. } => ErrorClass::Permanent,
        }
    }

    /// True when trying again later may succeed (network or server trouble).
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }
}
