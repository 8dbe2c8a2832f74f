//! Per-query state that plugins keep in the root query span's extensions
//! (storage counters, function figures, cache counts), so concurrent
//! queries never mix and the state goes when the query's trace does.

use crate::keys::QUERY_SPAN_NAME;
use std::sync::Arc;
use tracing_subscriber::registry::{LookupSpan, Registry};

/// The state `T` of the query enclosing the current span (the nearest
/// ancestor named `dftrace.query`), made on first use. `None` outside a
/// query or without a `tracing-subscriber` registry: nothing is recorded.
pub fn current_query_state<T: Default + Send + Sync + 'static>() -> Option<Arc<T>> {
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let id = dispatch.current_span().id().cloned()?;
        let span = registry.span(&id)?;
        let query = span.scope().find(|s| s.name() == QUERY_SPAN_NAME)?;
        let mut extensions = query.extensions_mut();
        if extensions.get_mut::<Arc<T>>().is_none() {
            extensions.insert(Arc::new(T::default()));
        }
        extensions
            .get_mut::<Arc<T>>()
            .map(|state| Arc::clone(state))
    })
}

/// The state `T` recorded for the query whose root span is `query_span`;
/// `None` when none was made (or the span is not in a `tracing-subscriber`
/// registry).
pub fn query_state<T: Send + Sync + 'static>(query_span: &tracing::Span) -> Option<Arc<T>> {
    query_span
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(id)?;
            let extensions = span.extensions();
            extensions.get::<Arc<T>>().map(Arc::clone)
        })
        .flatten()
}

/// Puts `state` in the extensions of the query whose root span is
/// `query_span` (replacing a state of the same type), where
/// [`current_query_state`] and [`query_state`] find it. Does nothing
/// without a `tracing-subscriber` registry.
pub fn set_query_state<T: Send + Sync + 'static>(query_span: &tracing::Span, state: Arc<T>) {
    query_span.with_subscriber(|(id, dispatch)| {
        if let Some(span) = dispatch
            .downcast_ref::<Registry>()
            .and_then(|registry| registry.span(id))
        {
            span.extensions_mut().replace(state);
        }
    });
}
