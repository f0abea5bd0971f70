//! Servers measured in turn (A B C A B C …), so that each comparison is made in
//! one run under the same machine conditions (see BENCHMARKING.md).

use super::measure::RunError;
use super::report::Runs;
use super::servers::ServerKind;

/// Runs every server in turn, `rounds` times (A B C A B C …), each run reported on
/// stderr as it ends. `None` when a server echoed wrong bytes: the bench stops.
pub fn in_turn<T>(
    servers: &[ServerKind],
    rounds: usize,
    label: &str,
    run: impl Fn(ServerKind) -> Result<T, RunError>,
    show: impl Fn(&T) -> String,
) -> Option<Vec<Runs<T>>> {
    let mut runs: Vec<Runs<T>> = servers.iter().map(|&kind| Runs::new(kind)).collect();
    for round in 1..=rounds {
        for server in &mut runs {
            let kind = server.kind;
            let result = match run(kind) {
                Ok(value) => {
                    eprintln!("[{label}] round {round}/{rounds} {kind}: {}", show(&value));
                    Ok(value)
                }
                Err(RunError::Corrupt(e)) => {
                    eprintln!("[{label}] {kind} echoed wrong bytes: {e}; aborting");
                    return None;
                }
                Err(RunError::Failed(why)) => {
                    eprintln!("[{label}] round {round}/{rounds} {kind}: run failed: {why}");
                    Err(why)
                }
            };
            server.results.push(result);
        }
    }
    Some(runs)
}
