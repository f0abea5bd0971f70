//! What every example program shares: clean shutdown on SIGINT/SIGTERM.

use std::process::ExitCode;

use signal_hook::iterator::Signals;

/// Installs the SIGINT/SIGTERM handlers. Call it before printing anything a
/// script waits for, so a signal sent right after that line finds them.
pub fn shutdown_signals(program: &str) -> Result<Signals, ExitCode> {
    Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]).map_err(|e| {
        eprintln!("{program}: cannot install signal handlers: {e}");
        ExitCode::FAILURE
    })
}
