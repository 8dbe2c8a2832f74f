//! Traces one query with dftrace-rules and prints its span tree.
//!
//! `cargo run -p dftrace-examples --example trace_one_query`

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace_registry::{DftraceConfig, Preset, SessionStateBuilderExt};
use dftrace_rules::{QueryOptions, run_sql};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

fn print_tree(spans: &[SpanData], parent: SpanId, depth: usize) {
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
        print_tree(spans, span.span_context.span_id(), depth + 1);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An in-memory pipeline, so the example can print what it recorded.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("example"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;

    let config = DftraceConfig::builder()
        .preset(Preset::MaximalNoData)
        .set("rules.rule_mode", "phase-only")
        .build()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        .build_dftrace()?;
    let ctx = SessionContext::new_with_state(state);
    let sql = "SELECT v % 3 AS k, count(*) AS n FROM unnest(range(0, 30)) AS t(v) WHERE v > 4 GROUP BY k ORDER BY k";
    let query = run_sql(&ctx, sql, &QueryOptions::new()).await?;
    println!(
        "{}",
        datafusion::arrow::util::pretty::pretty_format_batches(&query.batches)?
    );
    println!("trace {}:", query.trace_id);
    drop(query);
    // Tasks the query spawned may end their spans a moment after the results.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    print_tree(&exporter.get_finished_spans()?, SpanId::INVALID, 0);
    Ok(())
}
