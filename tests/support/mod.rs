//! The integration tests' one support module: spawning the real `ects` binary with a
//! clean environment, the real server on loopback port 0 (it reports its address),
//! guards that kill processes (and unmount drives) also when a test panics, temp
//! folders, HTTP helpers and readers of the store's on-disk layout.
//!
//! Shared helpers live at the top level; `client` holds the client tests' fixtures
//! (user `asdf`), `drive` the FUSE drive's (user `kim`, Unix only). Each test file
//! uses a different subset, hence `dead_code` is allowed.
#![allow(dead_code, unused_imports)]

pub mod client;
#[cfg(unix)]
pub mod drive;
mod http;
mod process;
mod server;
mod store;

pub use http::{encode_path, http_client, put_version};
pub use process::{
    BIN, Guard, PROCESS_TIMEOUT, TIMEOUT, clean, temp_dir, text, wait_for, wait_until,
};
pub use server::{Role, StartFailure, TestServer, add_user};
pub use store::{sha256_hex, slash_path, snapshot, stored_versions, temp_files};
