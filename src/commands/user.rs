use std::process::ExitCode;

use crate::cli::UserArgs;

pub fn user(_args: UserArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("user")
}
