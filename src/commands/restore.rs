use std::process::ExitCode;

use crate::cli::RestoreArgs;

pub fn restore(_args: RestoreArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("restore")
}
