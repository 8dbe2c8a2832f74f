//! Work dftrace does for a query after the query has returned (building its
//! operator spans, telling the observers), off the query's path. Whoever
//! shuts telemetry down waits for it first, so no span is lost at exit:
//! `dftrace-bootstrap`'s shutdown does, and a host that owns its provider
//! calls [`flush_pending_work`] before shutting the provider down.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A function that waits up to its argument for pending work; `true` when
/// none is left.
pub type Flush = fn(Duration) -> bool;

static FLUSHES: Mutex<Vec<Flush>> = Mutex::new(Vec::new());

/// Registers `flush` (once per function).
pub fn register_pending_work(flush: Flush) {
    let mut flushes = FLUSHES.lock().unwrap_or_else(PoisonError::into_inner);
    if !flushes
        .iter()
        .any(|known| std::ptr::fn_addr_eq(*known, flush))
    {
        flushes.push(flush);
    }
}

/// Waits up to `timeout` for the work done off queries' paths to finish;
/// `true` when none is left.
pub fn flush_pending_work(timeout: Duration) -> bool {
    let flushes: Vec<Flush> = FLUSHES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let deadline = std::time::Instant::now() + timeout;
    flushes
        .into_iter()
        .all(|flush| flush(deadline.saturating_duration_since(std::time::Instant::now())))
}
