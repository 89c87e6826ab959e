//! ects: a write-only, versioned-by-default backup drive and server for school labs.
//!
//! The map of the code is `docs/ARCHITECTURE.md`; the contract is SPEC.md.

pub mod api;
pub mod cli;
pub mod client;
pub mod commands;
pub mod drive;
pub mod durable;
pub mod ignore;
pub mod logging;
pub mod names;
pub mod private;
pub mod server;
pub mod store;
pub mod sync;
pub mod users;
