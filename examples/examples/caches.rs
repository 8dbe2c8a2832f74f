//! DataFusion's caches per query, on the facade (feature `caches`): a
//! service with its own OpenTelemetry provider scans a parquet table twice;
//! the root span of each statement says how often it found the file
//! metadata in DataFusion's cache (`dftrace.cache.file_metadata.hits`) and
//! how often it had to read it (`.misses`), and what the cache holds then.
//!
//! Run: `cargo run -p dftrace-examples --example caches`.

#[allow(dead_code, reason = "each example uses some of the shared helpers")]
mod common;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace::SessionStateBuilderExt;
use dftrace::caches::{ATTRIBUTE_PREFIX, FILE_METADATA};
use opentelemetry::Value;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn int(root: &SpanData, key: &str) -> i64 {
    root.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .and_then(|kv| match kv.value {
            Value::I64(v) => Some(v),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let dftrace = dftrace::init_for_host(
        dftrace::config_builder()
            .set("caches.enabled", true)
            .build()?,
    )?;
    tracing_subscriber::registry()
        .with(dftrace.layer(provider.tracer("orders-service")))
        .init();

    // A parquet file, written by DataFusion without dftrace.
    let dir = std::env::temp_dir().join(format!("dftrace-caches-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("orders.parquet");
    SessionContext::new()
        .sql(&format!(
            "COPY (SELECT value AS id, value % 5 AS status FROM generate_series(1, 10000)) \
             TO '{}' STORED AS PARQUET",
            file.display()
        ))
        .await?
        .collect()
        .await?;

    let state = SessionStateBuilder::new()
        .with_default_features()
        .build_with_dftrace(&dftrace)?;
    let ctx = SessionContext::new_with_state(state);
    let statements = [
        format!(
            "CREATE EXTERNAL TABLE orders STORED AS PARQUET LOCATION '{}'",
            file.display()
        ),
        "SELECT status, count(*) FROM orders GROUP BY status".to_owned(),
        "SELECT status, count(*) FROM orders GROUP BY status".to_owned(),
    ];
    let key = |what: &str| format!("{ATTRIBUTE_PREFIX}{FILE_METADATA}.{what}");
    let mut hits = Vec::new();
    for (n, statement) in statements.iter().enumerate() {
        // Each statement in a request span of its own, to find its root.
        let request = tracing::info_span!("request", n);
        async { ctx.sql(statement).await?.collect().await }
            .instrument(request)
            .await?;
        assert!(
            dftrace.flush(),
            "dftrace's work after the statement is done"
        );
        let spans = common::finished_spans(&exporter).await?;
        exporter.reset();
        let root = spans
            .into_iter()
            .find(|span| span.name == "dftrace.query")
            .ok_or("the statement's root span")?;
        println!(
            "statement {}: file metadata hits {}, misses {}, entries held {}",
            n + 1,
            int(&root, &key("hits")),
            int(&root, &key("misses")),
            int(&root, &key("entries")),
        );
        hits.push(int(&root, &key("hits")));
    }
    assert!(
        hits[1] > 0 && hits[2] > 0,
        "each scan finds the metadata the CREATE cached: {hits:?}"
    );
    println!("each scan found the footer the CREATE cached");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
