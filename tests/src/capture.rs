//! An in-memory OpenTelemetry pipeline for span assertions: one global
//! subscriber per test binary (operator spans run on Tokio worker threads, so
//! a thread-local subscriber would miss them), with tests telling their spans
//! apart by trace id.

use dftrace_rules::QueryEnded;
use opentelemetry::trace::{SpanId, Status, TracerProvider as _};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};
use std::sync::OnceLock;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

/// How long a test waits for a query's trace to complete before it fails:
/// generous, because it only bounds a hang (a loaded 2-core machine must give
/// the same answer as an idle one).
pub const TRACE_DEADLINE: Duration = Duration::from_secs(60);

/// The installed capture pipeline.
#[derive(Debug)]
pub struct SpanCapture {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

static CAPTURE: OnceLock<SpanCapture> = OnceLock::new();

/// Installs (once per process) a global subscriber exporting every span,
/// synchronously on close, to an in-memory exporter.
///
/// # Panics
///
/// If another global subscriber was installed first.
pub fn span_capture() -> &'static SpanCapture {
    install(None)
}

/// Like [`span_capture`], but only spans `directives` (`RUST_LOG` syntax, e.g.
/// the bootstrap's default `info`) let through: what a host exports. The
/// first call in a process decides the filter.
pub fn span_capture_filtered(directives: &str) -> &'static SpanCapture {
    install(Some(directives))
}

fn install(directives: Option<&str>) -> &'static SpanCapture {
    CAPTURE.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        // A host's own provider: what dftrace records is already masked.
        let provider = SdkTracerProvider::builder()
            .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
            .build();
        // Deferred operator spans are built through the global provider, as
        // dftrace-bootstrap installs it.
        opentelemetry::global::set_tracer_provider(provider.clone());
        let layer = dftrace_bootstrap::otel_layer(
            provider.tracer("dftrace-tests"),
            &dftrace_bootstrap::ExportConfig::default(),
        );
        let filter = directives.map(|directives| {
            dftrace_bootstrap::filter_layer(directives)
                .unwrap_or_else(|error| panic!("bad filter `{directives}`: {error}"))
        });
        let subscriber = tracing_subscriber::registry().with(filter).with(layer);
        tracing::subscriber::set_global_default(subscriber)
            .unwrap_or_else(|error| panic!("another global subscriber is installed: {error}"));
        SpanCapture {
            exporter,
            _provider: provider,
        }
    })
}

impl SpanCapture {
    /// Every finished span of the trace with this id (32 hex digits).
    pub fn trace(&self, trace_id: &str) -> Vec<SpanData> {
        self.exporter
            .get_finished_spans()
            .unwrap_or_default()
            .into_iter()
            .filter(|span| span.span_context.trace_id().to_string() == trace_id)
            .collect()
    }

    /// The spans of a trace once its root query span has closed, which
    /// happens only after every span under it has closed (`ended` is the
    /// query's [`QueryEnded`] handle). Waits on a blocking-pool thread, so
    /// the query's own tasks keep the runtime's workers.
    ///
    /// # Panics
    ///
    /// When the root has not closed within [`TRACE_DEADLINE`], listing the
    /// spans of the trace that did end.
    pub async fn ended_trace(&self, ended: QueryEnded, trace_id: &str) -> Vec<SpanData> {
        let closed = off_the_workers(move || ended.wait_timeout(TRACE_DEADLINE)).await;
        self.complete_trace(trace_id, closed, "close")
    }

    /// The spans of a trace once its root query span is among them, for a
    /// query whose [`QueryEnded`] handle the test does not have (a `run_sql`
    /// that failed): the root closes last, so its arrival means the trace is
    /// complete.
    ///
    /// # Panics
    ///
    /// When the root has not arrived within [`TRACE_DEADLINE`].
    pub async fn trace_with_root(&'static self, trace_id: &str) -> Vec<SpanData> {
        let id = trace_id.to_owned();
        let arrived = off_the_workers(move || {
            crate::wait::poll_until(TRACE_DEADLINE, || {
                self.trace(&id)
                    .iter()
                    .any(|span| span.name == dftrace_registry::QUERY_SPAN_NAME)
            })
        })
        .await;
        self.complete_trace(trace_id, arrived, "arrive")
    }

    /// The spans of a trace whose root query span did `what` in time
    /// (`complete`).
    ///
    /// # Panics
    ///
    /// When it did not, listing the spans of the trace that had ended.
    fn complete_trace(&self, trace_id: &str, complete: bool, what: &str) -> Vec<SpanData> {
        let spans = self.trace(trace_id);
        assert!(
            complete,
            "the root query span of trace {trace_id} did not {what} within {TRACE_DEADLINE:?}; \
             {} of its spans had ended: {:?}",
            spans.len(),
            spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
        );
        spans
    }

    /// The trace's one root query span and its operator spans (those with
    /// an operator index), once the root has arrived (see
    /// [`SpanCapture::trace_with_root`]).
    ///
    /// # Panics
    ///
    /// When the root has not arrived in time, or the trace has more roots
    /// than one.
    pub async fn root_and_operators(&'static self, trace_id: &str) -> (SpanData, Vec<SpanData>) {
        let spans = self.trace_with_root(trace_id).await;
        let root = query_root(&spans).clone();
        let operators = spans
            .iter()
            .filter(|span| attribute(span, dftrace_registry::keys::OPERATOR_INDEX).is_some())
            .cloned()
            .collect();
        (root, operators)
    }

    /// Every finished span with this name, in any trace.
    pub fn trace_spans_named(&self, name: &str) -> Vec<SpanData> {
        self.exporter
            .get_finished_spans()
            .unwrap_or_default()
            .into_iter()
            .filter(|span| span.name == name)
            .collect()
    }
}

/// Runs the blocking `wait` on a blocking-pool thread, so the query's own
/// tasks keep the runtime's workers; a wait that panicked counts as `false`.
async fn off_the_workers(wait: impl FnOnce() -> bool + Send + 'static) -> bool {
    tokio::task::spawn_blocking(wait).await.unwrap_or(false)
}

/// The value of attribute `key` on `span`.
pub fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    let key = Key::from(key.to_owned());
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| &kv.value)
}

/// The value of attribute `key` on `span` as a string, whatever its type.
pub fn attribute_string(span: &SpanData, key: &str) -> Option<String> {
    attribute(span, key).map(|value| value.as_str().into_owned())
}

/// Whether `span` was created under this tracing target.
pub fn has_target(span: &SpanData, target: &str) -> bool {
    attribute_string(span, "target").as_deref() == Some(target)
}

/// The row previews (`datafusion.preview`) on the operator spans among
/// `spans`.
pub fn operator_previews(spans: &[SpanData]) -> Vec<String> {
    spans
        .iter()
        .filter(|span| has_target(span, dftrace_registry::keys::EXEC_TARGET))
        .filter_map(|span| attribute_string(span, dftrace_registry::keys::PREVIEW))
        .collect()
}

/// Fails the test unless `span` ended with an error status whose
/// description contains `word`, showing the status.
#[track_caller]
pub fn assert_error_status(span: &SpanData, word: &str) {
    match &span.status {
        Status::Error { description } => {
            assert!(
                description.contains(word),
                "`{word}` is missing from: {description}"
            )
        }
        other => panic!("expected an error status on `{}`, got {other:?}", span.name),
    }
}

/// The first span among `spans` named `name`.
///
/// # Panics
///
/// When there is none, listing the names there are.
pub fn span_named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no span named `{name}` in {:?}",
                spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
            )
        })
}

/// The trace's one root query span; panics when there is none or more.
pub fn query_root(spans: &[SpanData]) -> &SpanData {
    let roots: Vec<&SpanData> = spans
        .iter()
        .filter(|span| span.name == dftrace_registry::QUERY_SPAN_NAME)
        .collect();
    assert_eq!(roots.len(), 1, "one root query span per trace");
    roots[0]
}

/// Each span of `of` has a parent chain, within `spans`, that ends at the
/// trace's root query span.
pub fn assert_under_root(spans: &[SpanData], of: &[&SpanData]) {
    let root = query_root(spans).span_context.span_id();
    let parents: std::collections::HashMap<SpanId, SpanId> = spans
        .iter()
        .map(|span| (span.span_context.span_id(), span.parent_span_id))
        .collect();
    for span in of {
        let mut current = span.span_context.span_id();
        let mut hops = 0;
        while current != root {
            current = *parents
                .get(&current)
                .unwrap_or_else(|| panic!("span `{}` is not under its query's root", span.name));
            hops += 1;
            assert!(hops < 100, "a parent cycle at `{}`", span.name);
        }
    }
}

/// Every span of the trace is under its root query span.
pub fn assert_all_under_root(spans: &[SpanData]) {
    let all: Vec<&SpanData> = spans.iter().collect();
    assert_under_root(spans, &all);
}
