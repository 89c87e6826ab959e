//! The client side of ects: the HTTP API client ([`Remote`], [`HttpUploader`]), the
//! durable upload [`Spool`] the drive and `ects backup` send every version through,
//! the ignored-names matcher, and the `backup` engine.
//!
//! Everything here is blocking on purpose: the drive calls it from FUSE worker threads
//! and the commands are plain `main` code. The HTTP client owns a small tokio runtime.

pub mod backup;
pub mod collect;
mod config;
mod errors;
mod http;
mod remote;
pub mod spool;
mod upload;
pub mod words;

#[cfg(test)]
mod mock_tests;

pub use crate::ignore::is_ignored;
pub use config::{ConnectConfig, default_cache_dir, spool_dir};
pub use errors::ClientError;
pub use remote::Remote;
pub use spool::{
    FailedUpload, Outcome, OutcomeKind, Spool, SpoolError, SpoolEvent, SpoolOptions, SpoolStatus,
    render_status,
};
pub use upload::{ErrorClass, HttpUploader, StoreUploader, UploadError, Uploader};
