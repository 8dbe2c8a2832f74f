//! Exports a traced query over OTLP with dftrace-bootstrap. Point it at a
//! collector with the standard variables, e.g.
//!
//! `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc
//!  cargo run -p dftrace-examples --example otlp_export`
//!
//! (default: `http/protobuf` to `http://localhost:4318`). With no collector
//! listening, the report says how many spans were dropped: never silently.

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace_bootstrap::ExportConfig;
use dftrace_registry::{DftraceConfig, RegistryStateBuilderExt};
use dftrace_rules::{QueryOptions, run_sql};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = DftraceConfig::builder()
        // The file layer: the environment's `DFTRACE_EXPORT__SHUTDOWN_TIMEOUT_MS`
        // wins over these 3 s.
        .toml_str("[export]\nshutdown_timeout_ms = 3000")
        .env(std::env::vars())
        .set("export.sink", "otlp")
        .build()?;
    let export: ExportConfig = config.section()?;
    let telemetry = dftrace_bootstrap::init(&export)?;
    println!("exporting to {:?}", telemetry.sink());

    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        .build_dftrace()?;
    let ctx = SessionContext::new_with_state(state);
    let query = run_sql(
        &ctx,
        "SELECT count(*) FROM unnest(range(0, 1000)) AS t(v)",
        &QueryOptions::new(),
    )
    .await?;
    println!("trace {}", query.trace_id);
    drop(query);

    let report = telemetry.shutdown();
    println!(
        "{} spans ended, {} exported, {} dropped",
        report.ended,
        report.exported,
        report.dropped()
    );
    Ok(())
}
