//! The span helpers every layer of the crate shares: clock readings as
//! span times, the tracer for the spans dftrace builds itself, and the
//! enclosing spans (a query's root, a worker's request) found through the
//! `tracing` registry.

use dftrace_registry::QUERY_SPAN_NAME;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::Span;
use tracing_subscriber::registry::{LookupSpan, Registry};

/// Nanoseconds since the Unix epoch, now: one clock read.
pub(crate) fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// `ns` nanoseconds after the Unix epoch.
pub(crate) fn unix_ns_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The tracer dftrace-bootstrap's layers keep in `span` or the nearest of
/// its ancestors (`None` with another subscriber: then the global provider's
/// is used).
pub(crate) fn span_tracer(span: &Span) -> Option<Arc<opentelemetry::global::BoxedTracer>> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        span.scope().find_map(|span| {
            span.extensions()
                .get::<Arc<opentelemetry::global::BoxedTracer>>()
                .cloned()
        })
    })
    .flatten()
}

/// The tracer for spans dftrace builds itself under `span`: the one
/// dftrace's layers keep ([`span_tracer`]), else the global provider's.
pub(crate) fn tracer_of(span: &Span) -> Arc<opentelemetry::global::BoxedTracer> {
    span_tracer(span).unwrap_or_else(|| {
        use opentelemetry::trace::TracerProvider as _;
        Arc::new(
            opentelemetry::global::tracer_provider().tracer_with_scope(
                opentelemetry::InstrumentationScope::builder(dftrace_registry::keys::SCOPE_NAME)
                    .build(),
            ),
        )
    })
}

/// Runs `f` on the nearest span named `name` among the current span and its
/// ancestors, if any.
fn with_enclosing<T>(
    name: &str,
    f: impl FnOnce(&tracing_subscriber::registry::SpanRef<'_, Registry>) -> T,
) -> Option<T> {
    let mut f = Some(f);
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let id = dispatch.current_span().id().cloned()?;
        let span = registry.span(&id)?;
        let found = span.scope().find(|s| s.name() == name)?;
        f.take().map(|f| f(&found))
    })
}

/// Whether the current span is inside a span named `name`.
pub(crate) fn inside_span_named(name: &str) -> bool {
    with_enclosing(name, |_| ()).is_some()
}

/// Whether the current span is inside a root query span.
pub(crate) fn inside_query() -> bool {
    inside_span_named(QUERY_SPAN_NAME)
}
