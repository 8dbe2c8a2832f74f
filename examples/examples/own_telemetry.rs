//! A service that owns its telemetry, as most do: its own `tracing`
//! subscriber (a `fmt` log layer) and its own OpenTelemetry provider (here
//! an in-memory exporter; a service would use `opentelemetry-otlp`). It adds
//! dftrace's layer in place of its own `tracing_opentelemetry::layer()`,
//! builds its session with the facade, and runs a statement with
//! `ctx.sql(..).collect()` inside its request span. It prints the
//! statement's trace: one trace, the request span at the top, the query's
//! root under it and every planner and operator span under that; the
//! literal of the query nowhere.
//!
//! Run: `cargo run -p dftrace-examples --example own_telemetry`.

#[allow(dead_code, reason = "each example uses some of the shared helpers")]
mod common;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace::SessionStateBuilderExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The service's own telemetry.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let dftrace = dftrace::init_for_host(dftrace::config_builder().build()?)?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(dftrace.layer(provider.tracer("orders-service")))
        .init();

    let state = SessionStateBuilder::new()
        .with_default_features()
        .build_with_dftrace(&dftrace)?;
    let ctx = SessionContext::new_with_state(state);
    ctx.sql("CREATE TABLE orders (id INT, customer VARCHAR) AS VALUES (1, 'grace'), (2, 'bob')")
        .await?
        .collect()
        .await?;

    // One request of the service, with a literal in its query.
    let request = tracing::info_span!("GET /orders", http.route = "/orders");
    let rows = async {
        ctx.sql("SELECT id FROM orders WHERE customer = 'grace'")
            .await?
            .collect()
            .await
    }
    .instrument(request)
    .await?;
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    // Operator spans are built after the query returned, off its path.
    assert!(dftrace.flush(), "dftrace's work after the query is done");
    provider.force_flush()?;

    // The request span closes after every span under it (tasks the query
    // spawned let go of theirs a moment after the results arrive): once it
    // is exported, so is its trace.
    let spans = common::spans_once_ended(&exporter, "GET /orders").await?;
    let request = spans
        .iter()
        .find(|span| span.name == "GET /orders")
        .ok_or("the request span was exported")?;
    let trace: Vec<&SpanData> = spans
        .iter()
        .filter(|span| span.span_context.trace_id() == request.span_context.trace_id())
        .collect();
    print_tree(&trace, request, 0);
    let roots = trace.iter().filter(|s| s.name == "dftrace.query").count();
    let leaked = trace.iter().any(|span| {
        span.attributes
            .iter()
            // Not a word of hex digits: run ids and fingerprints are hex.
            .any(|kv| kv.value.as_str().contains("grace"))
    });
    assert_eq!(roots, 1, "one root query span");
    assert!(!leaked, "the literal 'grace' stays out of every attribute");
    println!(
        "one trace, {} spans, {roots} query root under the request, no literal",
        trace.len()
    );
    Ok(())
}

fn print_tree(spans: &[&SpanData], span: &SpanData, depth: usize) {
    println!("{}{}", "  ".repeat(depth), span.name);
    let mut children: Vec<&&SpanData> = spans
        .iter()
        .filter(|child| child.parent_span_id == span.span_context.span_id())
        .collect();
    children.sort_by_key(|child| child.start_time);
    for child in children {
        print_tree(spans, child, depth + 1);
    }
}
