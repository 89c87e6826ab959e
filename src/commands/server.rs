use std::process::ExitCode;

use crate::cli::ServerArgs;

pub fn server(_args: ServerArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("server")
}
