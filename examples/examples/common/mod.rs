//! What the examples share: an in-memory OpenTelemetry pipeline so each
//! example can print the spans it produced.

use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

/// Installs a global subscriber that exports every span, when it ends, to the
/// returned in-memory exporter. The provider is also the global one: dftrace
/// builds its operator spans (after each query) through it.
pub(crate) fn capture_spans() -> Result<InMemorySpanExporter, Box<dyn std::error::Error>> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("example"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;
    Ok(exporter)
}

/// The spans recorded once the query's root span (`dftrace.query`) has
/// ended: it ends last, after every span under it (tasks a query spawned may
/// end theirs a moment after the results arrive).
pub(crate) async fn finished_spans(
    exporter: &InMemorySpanExporter,
) -> Result<Vec<SpanData>, Box<dyn std::error::Error>> {
    spans_once_ended(exporter, dftrace_registry::QUERY_SPAN_NAME).await
}

/// The spans recorded once a span named `name` has ended (and so, in the
/// `tracing` registry, every span under it). The deadline only bounds a
/// stuck run.
pub(crate) async fn spans_once_ended(
    exporter: &InMemorySpanExporter,
    name: &str,
) -> Result<Vec<SpanData>, Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let spans = exporter.get_finished_spans()?;
        if spans.iter().any(|s| s.name == name) {
            return Ok(spans);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("no span `{name}` ended within 30 s").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Prints `spans` as an indented tree with durations.
pub(crate) fn print_tree(spans: &[SpanData]) {
    print_children(spans, SpanId::INVALID, 0);
}

fn print_children(spans: &[SpanData], parent: SpanId, depth: usize) {
    let mut children: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.parent_span_id == parent)
        .collect();
    children.sort_by_key(|s| s.start_time);
    for span in children {
        let took = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default();
        println!(
            "{}{} ({:.2} ms)",
            "  ".repeat(depth),
            span.name,
            took.as_secs_f64() * 1e3
        );
        print_children(spans, span.span_context.span_id(), depth + 1);
    }
}
