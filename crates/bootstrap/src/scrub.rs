//! Literal values never leave with the spans: a span processor that masks
//! them in plan text, error messages and events before the spans go on.
//!
//! The spans of a trace `dftrace-rules` watches (a query whose literals are
//! not to be recorded) wait here until the trace's root query span ends; by
//! then the query's literal values are known (from its SQL text and its
//! plans, see `dftrace_registry::literals`), and every value is masked where
//! it stands as a token, in every span of the trace. Every other span
//! passes at once, with the literal syntax of DataFusion's logical plans
//! masked (`Utf8("abc")` → `Utf8(?)`), since its values are not known.

use dftrace_registry::keys;
use dftrace_registry::literals;
use opentelemetry::Value;
use opentelemetry::trace::{Status, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A trace holding more spans than this waiting for its root goes on
/// without waiting (masked with the values known so far).
const MAX_WAITING_SPANS: usize = 16_384;

/// The attributes that hold plan or expression text, error text, or
/// anything else a literal of the query can show up in: row previews too,
/// where a value typed in the query (`VALUES ('ada')`, a constant column)
/// is query text as much as data.
const TEXT_KEYS: &[&str] = &[
    keys::NODE,
    keys::PREVIEW,
    keys::PLAN_DIFF,
    keys::PARTITIONING,
    "logical_plan",
    "physical_plan",
    "error",
    "exception.message",
];

/// Masks the query's literal values in every span before `inner` sees it.
pub struct ScrubbingProcessor<P> {
    inner: P,
    waiting: Mutex<HashMap<TraceId, Vec<SpanData>>>,
}

impl<P> ScrubbingProcessor<P> {
    /// Wraps `inner`, the processor that exports.
    pub fn new(inner: P) -> Self {
        ScrubbingProcessor {
            inner,
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl<P> fmt::Debug for ScrubbingProcessor<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrubbingProcessor").finish_non_exhaustive()
    }
}

fn trace_key(trace: TraceId) -> u128 {
    u128::from_be_bytes(trace.to_bytes())
}

/// Masks `values` (and literal syntax) in `span`'s text attributes, status
/// description and event attributes.
pub(crate) fn scrub(span: &mut SpanData, values: &[String]) {
    for kv in &mut span.attributes {
        if !TEXT_KEYS.contains(&kv.key.as_str()) {
            continue;
        }
        if let Value::String(text) = &kv.value
            && let Some(masked) = literals::mask_text(text.as_str(), values)
        {
            kv.value = Value::String(masked.into());
        }
    }
    if let Status::Error { description } = &span.status
        && let Some(masked) = literals::mask_text(description, values)
    {
        span.status = Status::error(masked);
    }
    for event in span.events.events.iter_mut() {
        for kv in &mut event.attributes {
            if let Value::String(text) = &kv.value
                && let Some(masked) = literals::mask_text(text.as_str(), values)
            {
                kv.value = Value::String(masked.into());
            }
        }
    }
}

impl<P: SpanProcessor> ScrubbingProcessor<P> {
    /// Sends on every span still waiting (masked with what is known).
    fn release_all(&self) {
        let waiting: Vec<(TraceId, Vec<SpanData>)> = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (trace, spans) in waiting {
            self.release(trace, spans);
        }
    }

    fn release(&self, trace: TraceId, spans: Vec<SpanData>) {
        let values = literals::values(trace_key(trace));
        for mut span in spans {
            scrub(&mut span, &values);
            self.inner.on_end(span);
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for ScrubbingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let trace = span.span_context.trace_id();
        let key = trace_key(trace);
        let is_root = span.name == keys::QUERY_SPAN_NAME;
        match literals::treatment(key) {
            literals::Treatment::Mask => {}
            literals::Treatment::Keep => {
                if is_root {
                    literals::forget(key);
                }
                self.inner.on_end(span);
                return;
            }
            literals::Treatment::Unknown => {
                let mut span = span;
                scrub(&mut span, &[]);
                self.inner.on_end(span);
                return;
            }
        }
        let ready = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            let spans = waiting.entry(trace).or_default();
            spans.push(span);
            if is_root || spans.len() >= MAX_WAITING_SPANS {
                waiting.remove(&trace)
            } else {
                None
            }
        };
        if let Some(spans) = ready {
            self.release(trace, spans);
            if is_root {
                literals::forget(key);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.release_all();
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.release_all();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::InstrumentationScope;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::sync::Arc;
    use std::time::SystemTime;

    #[derive(Debug, Default, Clone)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);

    impl SpanProcessor for Collect {
        fn on_start(&self, _: &mut Span, _: &opentelemetry::Context) {}
        fn on_end(&self, span: SpanData) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(span);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    fn span(trace: TraceId, name: &'static str, node: &str) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                trace,
                SpanId::from_bytes([1; 8]),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes: vec![
                KeyValue::new(keys::NODE, node.to_owned()),
                KeyValue::new("dftrace.run_id", "secretvalue-is-not-plan-text"),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::error(format!("failed on {node}")),
            instrumentation_scope: InstrumentationScope::builder("t").build(),
        }
    }

    #[test]
    fn a_watched_trace_waits_for_its_root_and_loses_its_literals() {
        let collect = Collect::default();
        let processor = ScrubbingProcessor::new(collect.clone());
        let trace = TraceId::from_bytes([7; 16]);
        literals::watch(trace_key(trace));
        processor.on_end(span(
            trace,
            "FilterExec",
            "FilterExec: name@0 = secretvalue",
        ));
        assert!(collect.0.lock().unwrap().is_empty(), "waits for the root");
        literals::add(trace_key(trace), ["secretvalue".to_owned()]);
        processor.on_end(span(trace, keys::QUERY_SPAN_NAME, "-"));
        let spans = collect.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 2);
        assert_eq!(
            spans[0].attributes[0].value.as_str(),
            "FilterExec: name@0 = ?"
        );
        assert_eq!(
            spans[0].status,
            Status::error("failed on FilterExec: name@0 = ?")
        );
        // Only text that can hold plan text is touched.
        assert_eq!(
            spans[0].attributes[1].value.as_str(),
            "secretvalue-is-not-plan-text"
        );
        assert!(!literals::is_watched(trace_key(trace)));

        // Another trace passes at once, with the literal syntax masked.
        let other = TraceId::from_bytes([8; 16]);
        processor.on_end(span(other, "Filter", "Filter: t.a = Utf8(\"x\")"));
        let spans = collect.0.lock().unwrap().clone();
        assert_eq!(
            spans[2].attributes[0].value.as_str(),
            "Filter: t.a = Utf8(?)"
        );
    }
}
