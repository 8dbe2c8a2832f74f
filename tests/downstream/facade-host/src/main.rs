//! A host with one dftrace dependency. `cargo xtask test` runs it with
//! `DFTRACE_PRESET=maximal`, the file sink and a directory of its own, and
//! checks the trace it wrote: the three setup lines are the README's.

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace::prelude::*;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => {
            println!("facade-host: ok");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("facade-host: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("check-config") {
        return check_config();
    }
    let dftrace = dftrace::init()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .build_with_dftrace(&dftrace)?;
    let ctx = SessionContext::new_with_state(state);

    // Every plugin the default features name is linked, with no `use … as _`.
    let linked: Vec<&str> = dftrace::registry::linked_plugins()
        .iter()
        .map(|plugin| plugin.name())
        .collect();
    for plugin in ["rules", "preview", "object_store", "metrics"] {
        if !linked.contains(&plugin) {
            return Err(format!("plugin `{plugin}` is not linked; linked: {linked:?}").into());
        }
    }

    // A plain `ctx.sql(..).collect()`: no run_sql, and still one trace.
    let batches = ctx
        .sql(
            "SELECT name, password FROM (VALUES (1, 'ada', 'hunter2'), (2, 'bob', 'swordfish')) \
             AS users(id, name, password) WHERE id > 0 ORDER BY id",
        )
        .await?
        .collect()
        .await?;
    let rows: usize = batches.iter().map(|batch| batch.num_rows()).sum();
    if rows != 2 {
        return Err(format!("expected 2 rows, got {rows}").into());
    }

    let file = dftrace
        .telemetry()
        .and_then(|telemetry| telemetry.trace_file())
        .map(|path| path.to_path_buf())
        .ok_or("the file sink names its file")?;
    let report = dftrace.shutdown();
    if report.dropped() > 0 {
        return Err(format!("spans lost: {report}").into());
    }
    let text = std::fs::read_to_string(&file)?;
    let mut names = Vec::new();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line)?;
        for resource in value["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    names.push(span["name"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    // The root query span, an operator span, a planner phase span.
    for expected in ["dftrace.query", "SortExec", "optimize_physical_plan"] {
        if !names.iter().any(|name| name == expected) {
            return Err(format!("no `{expected}` span in {}: {names:?}", file.display()).into());
        }
    }
    // Redacted previews (the maximal preset), and no secret anywhere.
    if !text.contains("datafusion.preview") {
        return Err("no operator preview in the trace".into());
    }
    for secret in ["hunter2", "swordfish"] {
        if text.contains(secret) {
            return Err(format!("`{secret}` reached the trace file").into());
        }
    }
    Ok(())
}

/// What a host does with its configuration (`DFTRACE_CONFIG`) at start-up:
/// telemetry installed and a session built, where any setting this build
/// cannot honour (a section or a protocol of a feature it lacks) is an
/// error. No query runs.
fn check_config() -> Result<(), Box<dyn std::error::Error>> {
    let dftrace = dftrace::init()?;
    SessionStateBuilder::new()
        .with_default_features()
        .build_with_dftrace(&dftrace)?;
    let report = dftrace.shutdown();
    if report.dropped() > 0 {
        return Err(format!("spans lost: {report}").into());
    }
    Ok(())
}
