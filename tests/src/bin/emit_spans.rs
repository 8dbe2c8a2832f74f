//! Emits spans through dftrace-bootstrap, configured from the environment
//! (DFTRACE_* and OTEL_* variables), then shuts down and prints the shutdown
//! report as one JSON line. The bootstrap tests run it as a child process,
//! because `init` installs process-wide state.
//!
//! Usage: `emit_spans <count>` emits `count` spans with typed attributes;
//! `emit_spans --query` runs one traced DataFusion query through the
//! registry instead and reports its row count.

// Linked so their plugins register: the query gets the metrics summary's
// typed attributes on its root span.
use dftrace_metrics_summary as _;

const QUERY: &str = "SELECT v % 3 AS k, count(*) AS c FROM (SELECT * FROM unnest(range(0, 300)) AS t(v)) WHERE v % 5 <> 0 GROUP BY v % 3 ORDER BY k";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argument = std::env::args().nth(1).unwrap_or_else(|| "10".to_owned());
    let config = dftrace_registry::DftraceConfig::from_env()?;
    let export: dftrace_bootstrap::ExportConfig = config.section()?;
    let guard = dftrace_bootstrap::init(&export)?;
    let started = std::time::Instant::now();
    let mut rows = serde_json::Value::Null;
    if argument == "--query" {
        let runtime = dftrace_tests::two_worker_runtime()?;
        let result = runtime.block_on(async {
            let ctx = dftrace_tests::try_dftrace_context(&config)?;
            let query =
                dftrace_rules::run_sql(&ctx, QUERY, &dftrace_rules::QueryOptions::new()).await?;
            Ok::<_, Box<dyn std::error::Error>>(
                datafusion::arrow::util::pretty::pretty_format_batches(&query.batches)?.to_string(),
            )
        })?;
        rows = serde_json::Value::String(result);
    } else {
        let count: u64 = argument.parse()?;
        for i in 0..count {
            let span = tracing::info_span!(
                "emitted",
                test.index = i as i64,
                test.ratio = i as f64 / 2.0,
                test.flag = i % 2 == 0,
                test.label = "typed",
            );
            span.in_scope(|| {});
        }
    }
    let emit_ms = started.elapsed().as_millis();
    let trace_file = guard.trace_file().map(|p| p.display().to_string());
    let shutdown_started = std::time::Instant::now();
    let report = guard.shutdown();
    println!(
        "{}",
        serde_json::json!({
            "ended": report.ended,
            "exported": report.exported,
            "failed": report.failed,
            "dropped": report.dropped(),
            "timed_out": report.timed_out,
            "emit_ms": emit_ms,
            "shutdown_ms": shutdown_started.elapsed().as_millis(),
            "trace_file": trace_file,
            "rows": rows,
        })
    );
    Ok(())
}
