//! Exports a traced query to a local OTLP-JSON-lines file with
//! dftrace-bootstrap's file sink (the default when no endpoint is set).
//!
//! `cargo run -p dftrace-examples --example file_sink`

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace_bootstrap::{ExportConfig, Sink};
use dftrace_registry::{DftraceConfig, RegistryStateBuilderExt};
use dftrace_rules::{QueryOptions, run_sql};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = DftraceConfig::builder()
        .env(std::env::vars())
        .set("export.sink", "file")
        .build()?;
    let export: ExportConfig = config.section()?;
    assert_eq!(export.sink, Sink::File);
    let telemetry = dftrace_bootstrap::init(&export)?;
    let trace_file = telemetry.trace_file().map(|p| p.to_path_buf());

    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        .build_dftrace()?;
    let ctx = SessionContext::new_with_state(state);
    let query = run_sql(&ctx, "SELECT 40 + 2 AS answer", &QueryOptions::new()).await?;
    println!(
        "{}",
        datafusion::arrow::util::pretty::pretty_format_batches(&query.batches)?
    );
    drop(query);

    let report = telemetry.shutdown();
    println!(
        "{} spans exported, {} dropped",
        report.exported,
        report.dropped()
    );
    if let Some(path) = trace_file {
        let lines = std::fs::read_to_string(&path)?.lines().count();
        println!("{lines} OTLP JSON line(s) in {}", path.display());
    }
    Ok(())
}
