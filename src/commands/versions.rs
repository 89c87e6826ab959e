use std::process::ExitCode;

use crate::cli::VersionsArgs;

pub fn versions(_args: VersionsArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("versions")
}
