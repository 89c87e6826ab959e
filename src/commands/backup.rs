use std::process::ExitCode;

use crate::cli::BackupArgs;

pub fn backup(_args: BackupArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("backup")
}
