//! A trace file to look at, on the facade: dftrace's own pipeline writes a
//! query's spans to an OTLP-JSON file (the file sink, the default when no
//! endpoint is set), and dftrace-view draws the last query of the file as
//! a flame graph (by wall time and by operator self time), a Chrome trace
//! (open in Perfetto) and one self-contained HTML page; `cargo xtask view`
//! does the same from the command line.
//!
//! Run: `cargo run -p dftrace-examples --example view`.

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace::SessionStateBuilderExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("dftrace-view-example-{}", std::process::id()));
    let dftrace = dftrace::init_with(
        dftrace::config_builder()
            .set("export.sink", "file")
            .set("export.file.dir", dir.display().to_string())
            .build()?,
    )?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .build_with_dftrace(&dftrace)?;
    let ctx = SessionContext::new_with_state(state);
    let rows = ctx
        .sql(
            "SELECT c.name, sum(o.amount) AS spent \
             FROM (VALUES (1, 'ada'), (2, 'bob')) AS c(id, name) \
             JOIN (SELECT value % 2 + 1 AS customer, value AS amount \
                   FROM generate_series(1, 1000)) AS o ON o.customer = c.id \
             GROUP BY c.name ORDER BY spent DESC",
        )
        .await?
        .collect()
        .await?;
    assert_eq!(rows.iter().map(|batch| batch.num_rows()).sum::<usize>(), 2);

    let file = dftrace
        .telemetry()
        .and_then(|telemetry| telemetry.trace_file())
        .map(|path| path.to_path_buf())
        .ok_or("the file sink names its file")?;
    // The file is complete once telemetry is shut down.
    let report = dftrace.shutdown();
    assert_eq!(report.dropped(), 0, "{report}");

    let out = dir.join("view");
    let files = dftrace_view::render_trace_file(&file, None, &out)?;
    let page = std::fs::read_to_string(&files.html)?;
    assert!(page.contains("HashJoinExec"), "the page shows the join");
    for path in [
        &files.svg,
        &files.self_time_svg,
        &files.chrome_trace,
        &files.html,
    ] {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let kind = name
            .split_once('.')
            .map(|(_, kind)| kind)
            .unwrap_or_default();
        println!("{kind}: {} bytes", std::fs::metadata(path)?.len());
    }
    println!(
        "trace {} drawn: flame graphs, Chrome trace, HTML page",
        files.trace_id
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
