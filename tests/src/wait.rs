//! Waiting on a condition with a deadline: the one way tests wait for
//! something to happen (a port to listen, spans to arrive, a trace to
//! complete). The deadline only bounds a hang; the answer never depends on
//! how long anything took.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Checks `condition` until it holds or `timeout` has passed; returns whether
/// it held.
pub fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`poll_until`], but a condition that never holds is a test failure.
///
/// # Panics
///
/// When `timeout` passes first, with `what` never happened and `state()`,
/// what was seen instead.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    condition: impl FnMut() -> bool,
    state: impl FnOnce() -> String,
) {
    if !poll_until(timeout, condition) {
        panic!(
            "{what} did not happen within {timeout:?}; seen: {}",
            state()
        );
    }
}

/// What a shutdown may take beyond its configured timeout before a test
/// calls it hung: the guard gives up at the timeout (and says so in its
/// report); the slack absorbs a loaded machine's scheduling, so it bounds a
/// hang without measuring speed.
pub const SHUTDOWN_SLACK_MS: u64 = 5_000;
