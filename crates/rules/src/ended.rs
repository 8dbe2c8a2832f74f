//! Knowing when a query's trace is complete: a handle that resolves once the
//! root query span has closed.
//!
//! A `tracing` span closes only after every span opened under it has closed
//! (each child holds a reference to its parent), so "the root has closed"
//! means "every span of the query has ended and been handed to the span
//! processors". The handle learns it from a value kept in the root span's
//! `tracing-subscriber` registry extensions, which the registry drops after
//! every layer's `on_close` has run.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tracing::Span;
use tracing_subscriber::registry::{LookupSpan, Registry};

#[derive(Debug, Default)]
struct EndState {
    ended: Mutex<Ended>,
    condvar: Condvar,
}

#[derive(Debug, Default)]
struct Ended {
    done: bool,
    wakers: Vec<Waker>,
}

impl EndState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ended> {
        self.ended.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self) {
        let wakers = {
            let mut ended = self.lock();
            ended.done = true;
            std::mem::take(&mut ended.wakers)
        };
        self.condvar.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }
}

/// Kept in the root span's extensions; dropped when the span closes.
struct CloseSignal(Arc<EndState>);

impl Drop for CloseSignal {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Resolves once a query's root span (`dftrace.query`) has closed, and with
/// it every span of the query: from then on every span of the trace has
/// reached the span processors (an in-memory or simple exporter holds them;
/// a batch processor has queued them for export).
///
/// Await it (`query.ended().await`) or block on it with
/// [`QueryEnded::wait_timeout`]. Without a `tracing-subscriber` registry
/// (or when the root span is disabled) nothing is recorded, and the handle
/// is resolved from the start.
#[derive(Debug, Clone)]
#[must_use = "a handle does nothing unless awaited or waited on"]
pub struct QueryEnded {
    state: Arc<EndState>,
}

impl QueryEnded {
    /// Watches `span`: the handle resolves when the registry closes it.
    pub(crate) fn watch(span: &Span) -> QueryEnded {
        let state = Arc::new(EndState::default());
        let signal = CloseSignal(Arc::clone(&state));
        let mut signal = Some(signal);
        span.with_subscriber(|(id, dispatch)| {
            if let Some(data) = dispatch
                .downcast_ref::<Registry>()
                .and_then(|registry| registry.span_data(id))
                && let Some(signal) = signal.take()
            {
                tracing_subscriber::registry::SpanData::extensions_mut(&data).insert(signal);
            }
        });
        // Not stored (no registry, or a disabled span): there is nothing to
        // wait for, and dropping the signal here resolves the handle.
        drop(signal);
        QueryEnded { state }
    }

    /// Whether the root span has closed.
    pub fn is_ended(&self) -> bool {
        self.state.lock().done
    }

    /// Blocks the calling thread until the root span has closed or `timeout`
    /// has passed; returns whether it closed. Do not call it on an async
    /// runtime's worker thread (the query's own tasks may need that thread
    /// to finish): await the handle there instead.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut ended = self.state.lock();
        while !ended.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            ended = self
                .state
                .condvar
                .wait_timeout(ended, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Future for QueryEnded {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut ended = self.state.lock();
        if ended.done {
            return Poll::Ready(());
        }
        if !ended.wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
            ended.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn resolves_when_the_span_and_its_children_have_closed() {
        let subscriber =
            tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new());
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("root");
            let ended = QueryEnded::watch(&root);
            let child = tracing::info_span!(parent: &root, "child");
            drop(root);
            assert!(!ended.is_ended(), "a child still holds the root open");
            assert!(!ended.wait_timeout(Duration::ZERO));
            drop(child);
            assert!(ended.is_ended());
            assert!(ended.wait_timeout(Duration::ZERO));
            let mut ended = ended;
            let mut cx = Context::from_waker(Waker::noop());
            assert_eq!(Pin::new(&mut ended).poll(&mut cx), Poll::Ready(()));
        });
    }

    #[test]
    fn is_resolved_at_once_without_a_registry() {
        let ended = QueryEnded::watch(&tracing::info_span!("nobody records this"));
        assert!(ended.is_ended());
    }
}
