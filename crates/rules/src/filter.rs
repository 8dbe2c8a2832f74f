//! dftrace's spans are `tracing` spans, so the subscriber's filter decides
//! whether they exist. A filter that drops them all (`RUST_LOG=my_service=
//! info` on a host's subscriber) would leave dftrace silent; this says so
//! instead: an error when a session is built under such a subscriber, and
//! a warning event when a query's root finds itself dropped.

use crate::error::RulesError;
use dftrace_registry::SpanLevel;
use dftrace_registry::keys::QUERY_TARGET;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the current subscriber lets root query spans at `level` through.
fn root_enabled(level: SpanLevel) -> bool {
    match level {
        SpanLevel::Trace => tracing::enabled!(target: QUERY_TARGET, tracing::Level::TRACE),
        SpanLevel::Debug => tracing::enabled!(target: QUERY_TARGET, tracing::Level::DEBUG),
        SpanLevel::Info => tracing::enabled!(target: QUERY_TARGET, tracing::Level::INFO),
        SpanLevel::Warn => tracing::enabled!(target: QUERY_TARGET, tracing::Level::WARN),
        SpanLevel::Error => tracing::enabled!(target: QUERY_TARGET, tracing::Level::ERROR),
    }
}

/// Whether a subscriber is installed (for the process or this thread).
fn subscriber_installed() -> bool {
    tracing::dispatcher::get_default(|dispatch| !dispatch.is::<tracing::subscriber::NoSubscriber>())
}

/// Fails when a subscriber is installed whose filter drops dftrace's spans
/// at `level` (with none installed yet there is nothing to check: telemetry
/// may come later, or not at all).
pub(crate) fn check_spans_pass(level: SpanLevel) -> Result<(), RulesError> {
    if subscriber_installed() && !root_enabled(level) {
        return Err(RulesError::SpansFilteredOut { level });
    }
    Ok(())
}

/// Called when a root query span is disabled: says so once per process
/// when a subscriber is installed (its filter dropped the span).
pub(crate) fn note_root_disabled(level: SpanLevel) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if subscriber_installed() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: dftrace_registry::keys::WARNING_TARGET,
            "{}",
            RulesError::SpansFilteredOut { level }
        );
    }
}
