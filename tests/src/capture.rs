//! An in-memory OpenTelemetry pipeline for span assertions: one global
//! subscriber per test binary (operator spans run on Tokio worker threads, so
//! a thread-local subscriber would miss them), with tests telling their spans
//! apart by trace id.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;

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
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
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

    /// The spans of a trace once no new span of it has ended for a moment:
    /// tasks a query spawned can end their spans just after its results
    /// arrive. Waits at most 5 seconds.
    pub fn settled_trace(&self, trace_id: &str) -> Vec<SpanData> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut spans = self.trace(trace_id);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(30));
            let again = self.trace(trace_id);
            if again.len() == spans.len() || std::time::Instant::now() > deadline {
                return again;
            }
            spans = again;
        }
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
