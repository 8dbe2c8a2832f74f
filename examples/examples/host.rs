//! A host using every dftrace crate through the registry: one config, one
//! telemetry init, one session; a query over a table with a secret column;
//! spans to an OTLP-JSON file with redacted previews, storage spans and the
//! metrics summary on the root span.
//!
//! `cargo run -p dftrace-examples --example host`

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace_bootstrap::ExportConfig;
use dftrace_registry::{DftraceConfig, Preset, RegistryStateBuilderExt};
use dftrace_rules::{QueryOptions, run_sql};
// Plugins register at link time: reference each crate the host wants.
use dftrace_metrics_summary as _;
use dftrace_object_store_registry as _;
use dftrace_preview_redaction as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("dftrace-host-{}", std::process::id()));
    let config = DftraceConfig::builder()
        .preset(Preset::Maximal)
        .env(std::env::vars())
        .set("export.sink", "file")
        .set("export.file.dir", dir.display().to_string())
        .set("export.service_name", "example-host")
        .build()?;
    let telemetry = dftrace_bootstrap::init(&config.section::<ExportConfig>()?)?;
    let trace_file = telemetry.trace_file().map(|p| p.to_path_buf());

    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        .build_dftrace()?;
    let ctx = SessionContext::new_with_state(state);
    let users = dir.join("users.parquet");
    ctx.sql(&format!(
        "COPY (SELECT v AS id, 'user' || v AS name, 'pw-' || v AS password \
         FROM unnest(range(0, 1000)) AS t(v)) TO '{}'",
        users.display()
    ))
    .await?
    .collect()
    .await?;
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE users STORED AS PARQUET LOCATION '{}'",
        users.display()
    ))
    .await?;

    let query = run_sql(
        &ctx,
        "SELECT name, password FROM users WHERE id % 100 = 7 ORDER BY id",
        &QueryOptions::new().attribute("tenant", "acme"),
    )
    .await?;
    println!(
        "{}",
        datafusion::arrow::util::pretty::pretty_format_batches(&query.batches)?
    );
    let trace_id = query.trace_id.clone();
    drop(query);

    let report = telemetry.shutdown();
    println!(
        "{} spans exported, {} dropped",
        report.exported,
        report.dropped()
    );
    let path = trace_file.ok_or("the file sink names its file")?;
    let text = std::fs::read_to_string(&path)?;
    println!("trace {trace_id} in {}", path.display());
    // What the exported trace shows, and what it must not.
    for expected in [
        "\"dftrace.query\"",
        "\"datafusion.preview\"",
        "\"dftrace.metrics.output_rows\"",
        "\"file.get",
        "\"tenant\"",
        "***",
    ] {
        assert!(text.contains(expected), "{expected} in the trace");
    }
    assert!(!text.contains("pw-7"), "the password never reaches a span");
    assert_eq!(report.dropped(), 0);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
