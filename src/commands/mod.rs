//! The binary's subcommands: argument handling and human-readable reports around the
//! library. Errors here carry context for a person (`anyhow`); the library's are typed.
//! Each command lives in its own file and returns the process's exit code.

mod backup;
mod collect;
mod fsck;
mod mount;
mod restore;
mod server;
mod status;
mod time;
mod user;
mod versions;

pub use backup::backup;
pub use collect::collect;
pub use fsck::fsck;
pub use mount::mount;
pub use restore::restore;
pub use server::server;
pub use status::status;
pub use user::user;
pub use versions::versions;
