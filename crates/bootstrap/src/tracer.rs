//! The tracer of the installed subscriber, for spans dftrace builds through
//! OpenTelemetry directly (operator spans, after each query): kept in the
//! registry extensions of each root query span and worker request span, so
//! those spans go through the same provider as every other span, installed
//! globally or for one thread.

use dftrace_registry::keys::{QUERY_SPAN_NAME, WORKER_SPAN_NAME};
use opentelemetry::global::BoxedTracer;
use std::sync::Arc;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Puts its tracer (`Arc<BoxedTracer>`) in the spans operator spans hang
/// under.
pub(crate) struct TracerLayer {
    tracer: Arc<BoxedTracer>,
}

impl TracerLayer {
    pub(crate) fn new(tracer: BoxedTracer) -> Self {
        TracerLayer {
            tracer: Arc::new(tracer),
        }
    }
}

impl<S> Layer<S> for TracerLayer
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let name = attrs.metadata().name();
        if (name == QUERY_SPAN_NAME || name == WORKER_SPAN_NAME)
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Arc::clone(&self.tracer));
        }
    }
}
