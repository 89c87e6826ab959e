use std::process::ExitCode;

use crate::cli::MountArgs;

pub fn mount(_args: MountArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("mount")
}
