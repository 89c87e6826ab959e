use std::process::ExitCode;

use crate::cli::StatusArgs;

pub fn status(_args: StatusArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("status")
}
