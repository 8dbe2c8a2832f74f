//! dftrace-object-store-registry on its own: every store the session
//! resolves is wrapped once, so each storage request is a span under the
//! query, and the query's bytes are counted.
//!
//! `cargo run -p dftrace-examples --example object_store_spans`

mod common;

use datafusion::execution::object_store::DefaultObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use dftrace_object_store_registry::{ObjectStoreConfig, instrument_registry, query_storage_totals};
use std::sync::Arc;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exporter = common::capture_spans()?;

    let registry = instrument_registry(
        Arc::new(DefaultObjectStoreRegistry::new()),
        &ObjectStoreConfig::default(),
    );
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(registry)
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);

    let dir = std::env::temp_dir().join(format!("dftrace-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("numbers.parquet");
    ctx.sql(&format!(
        "COPY (SELECT v, v * 2 AS w FROM unnest(range(0, 10000)) AS t(v)) TO '{}'",
        file.display()
    ))
    .await?
    .collect()
    .await?;

    // Storage requests are counted per query: the nearest enclosing span
    // named `dftrace.query` (the root span dftrace-rules creates).
    let query = tracing::info_span!("dftrace.query");
    let batches = async {
        ctx.register_parquet("numbers", file.display().to_string(), Default::default())
            .await?;
        ctx.sql("SELECT sum(w) FROM numbers WHERE v % 7 = 0")
            .await?
            .collect()
            .await
    }
    .instrument(query.clone())
    .await?;
    println!(
        "{}",
        datafusion::arrow::util::pretty::pretty_format_batches(&batches)?
    );
    let totals = query_storage_totals(&query).unwrap_or_default();
    println!(
        "storage: {} requests, {} bytes read",
        totals.requests, totals.bytes_read
    );
    drop(query);

    let spans = common::finished_spans(&exporter).await?;
    common::print_tree(&spans);
    assert!(totals.requests > 0 && totals.bytes_read > 0, "{totals:?}");
    assert!(
        spans.iter().any(|s| s.name.starts_with("file.get")),
        "a file.get* span"
    );
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
