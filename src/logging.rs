//! Log set-up: `tracing` to stderr, coloured on a terminal, plain otherwise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` wins over `-v`.
pub fn init(verbose: u8) {
    // fuser logs routine events at info/warn (e.g. a warning after every clean
    // unmount); only its errors matter to a person running the drive.
    let default = match verbose {
        0 => "info,fuser=error",
        1 => "debug,fuser=warn",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let shown = filter.to_string();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    // The first line at debug level, so `-v` or RUST_LOG=debug visibly took effect.
    tracing::debug!(filter = %shown, "log filter");
}
