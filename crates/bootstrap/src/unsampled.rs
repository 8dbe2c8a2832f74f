//! Spans of unsampled traces, disabled for every layer.
//!
//! The sampler's decision reaches only the OpenTelemetry span: the `tracing`
//! span stays enabled, so instrumentation that asks `Span::is_disabled()`
//! (as `datafusion-tracing` does before formatting plans and diffs) does all
//! of its work for a trace that exports nothing. A span that records
//! [`UNSAMPLED_FIELD`] as `true` (dftrace-rules' root query span does when its
//! trace is not sampled) is marked, and every span opened while a marked span
//! is current is disabled. Events are left alone.

use dftrace_registry::UNSAMPLED_FIELD;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The layer: add it to the subscriber before the OpenTelemetry layer
/// ([`init`](crate::init) and [`otel_layer`](crate::otel_layer) do).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnsampledTraceFilter;

/// The mark on a span whose trace is not sampled.
struct Unsampled;

/// Finds `UNSAMPLED_FIELD = true` among recorded values.
#[derive(Default)]
struct FindUnsampled(bool);

impl Visit for FindUnsampled {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if value && field.name() == UNSAMPLED_FIELD {
            self.0 = true;
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// Marks span `id` when `record` visits `UNSAMPLED_FIELD = true`.
fn mark_if_unsampled<S>(id: &Id, record: impl FnOnce(&mut dyn Visit), ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut found = FindUnsampled::default();
    record(&mut found);
    if found.0
        && let Some(span) = ctx.span(id)
    {
        span.extensions_mut().insert(Unsampled);
    }
}

impl<S> Layer<S> for UnsampledTraceFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Whether a span is wanted depends on the current span, so span
        // callsites are asked each time; events keep their cached interest.
        if metadata.is_span() {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        if !metadata.is_span() {
            return true;
        }
        ctx.lookup_current()
            .is_none_or(|current| current.extensions().get::<Unsampled>().is_none())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        mark_if_unsampled(id, |visitor| attrs.record(visitor), &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        mark_if_unsampled(id, |visitor| values.record(visitor), &ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// Counts spans that reached the subscriber's layers.
    #[derive(Default, Clone)]
    struct SpanCount(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl<S: Subscriber> Layer<S> for SpanCount {
        fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn spans_inside_a_marked_span_are_disabled_and_others_are_not() {
        let count = SpanCount::default();
        let subscriber = tracing_subscriber::registry()
            .with(UnsampledTraceFilter)
            .with(count.clone());
        tracing::subscriber::with_default(subscriber, || {
            let sampled = tracing::info_span!("query", dftrace.unsampled = tracing::field::Empty);
            sampled.in_scope(|| {
                let child = tracing::info_span!("rule");
                assert!(!child.is_disabled(), "a sampled trace keeps its spans");
            });

            let unsampled = tracing::info_span!("query", dftrace.unsampled = tracing::field::Empty);
            unsampled.record(UNSAMPLED_FIELD, true);
            unsampled.in_scope(|| {
                let child = tracing::info_span!("rule");
                assert!(
                    child.is_disabled(),
                    "nothing is opened in an unsampled trace"
                );
                let _entered = child.enter();
                assert!(tracing::info_span!("grandchild").is_disabled());
            });

            let marked_at_creation = tracing::info_span!("query", dftrace.unsampled = true);
            marked_at_creation.in_scope(|| assert!(tracing::info_span!("rule").is_disabled()));

            assert!(
                !tracing::info_span!("after").is_disabled(),
                "outside the marked span, spans are enabled again"
            );
        });
        // query, rule, query, query, after: five spans reached the layers.
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 5);
    }
}
