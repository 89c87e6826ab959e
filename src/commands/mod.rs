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

use std::process::ExitCode;

use crate::client::ClientError;

/// Exit code when the server refused the user name or password (`EX_NOPERM` in
/// sysexits.h): `mount` and `backup` stop at once, nothing is mounted; login scripts can
/// tell it from "server unreachable" (which mounts offline). README, DEPLOYMENT.md.
pub const EXIT_CREDENTIALS_REFUSED: u8 = 77;

/// The exit code for a command that failed with `err`.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    let refused = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<ClientError>(),
            Some(ClientError::Auth { .. })
        )
    });
    if refused {
        ExitCode::from(EXIT_CREDENTIALS_REFUSED)
    } else {
        ExitCode::FAILURE
    }
}
