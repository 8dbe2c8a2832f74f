//! dftrace-udf: a host scalar function whose time shows up in the trace
//! (a `score` span under the query root) and in the view (a frame of the
//! flame graph, a row of the page's span list).
//!
//! `cargo run -p dftrace-examples --example udf`

use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_int64_array;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use dftrace_bootstrap::ExportConfig;
use dftrace_registry::{DftraceConfig, RegistryStateBuilderExt};
use dftrace_rules::{QueryOptions, run_sql};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("dftrace-udf-example-{}", std::process::id()));
    let config = DftraceConfig::builder()
        .set("export.sink", "file")
        .set("export.file.dir", dir.display().to_string())
        .set("udf.versions.score", "1.4.0")
        .build()?;
    let export: ExportConfig = config.section()?;
    let telemetry = dftrace_bootstrap::init(&export)?;
    let trace_file = telemetry
        .trace_file()
        .map(|p| p.to_path_buf())
        .ok_or("a trace file")?;

    // The host's function: some arithmetic per row, the kind of work a host
    // puts in its own UDFs.
    let score = create_udf(
        "score",
        vec![DataType::Int64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let input = as_int64_array(&arrays[0])?;
            let output: Float64Array = input
                .iter()
                .map(|v| {
                    v.map(|v| (0..50).fold(v as f64, |acc, i| (acc * 1.0001 + i as f64).sqrt()))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(output) as ArrayRef))
        }),
    );
    // Registered on the builder, next to DataFusion's own functions, so the
    // plugin finds it when the session is built.
    let mut builder = SessionStateBuilder::new().with_default_features();
    builder
        .scalar_functions()
        .get_or_insert_with(Vec::new)
        .push(Arc::new(score));
    let state = builder.with_dftrace(&config)?.build_dftrace()?;
    let ctx = SessionContext::new_with_state(state);
    let sql =
        "SELECT v % 4 AS k, max(score(v)) AS best FROM unnest(range(0, 200000)) AS t(v) GROUP BY k";
    let query = run_sql(&ctx, sql, &QueryOptions::new()).await?;
    let trace_id = query.trace_id.clone();
    let ended = query.ended();
    drop(query);
    assert!(
        ended.wait_timeout(std::time::Duration::from_secs(60)),
        "the query's trace completes"
    );
    let report = telemetry.shutdown();
    assert_eq!(report.dropped(), 0, "{report}");

    // What the view reads: the function's span, under the operator that
    // called it.
    let trace = dftrace_view::read_trace_file(&trace_file, Some(&trace_id))?;
    let span = trace
        .spans
        .iter()
        .find(|span| span.attribute(dftrace_udf::UDF_NAME) == Some("score"))
        .ok_or("a span for score")?;
    println!(
        "udf score {}: {} calls, {} rows, {:.1} ms inside, params {}, called by {}",
        span.attribute(dftrace_udf::UDF_VERSION).unwrap_or("-"),
        span.attribute(dftrace_udf::UDF_CALLS).unwrap_or("?"),
        span.attribute(dftrace_udf::UDF_ROWS).unwrap_or("?"),
        span.attribute(dftrace_udf::UDF_TIME_NS)
            .and_then(|ns| ns.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1e6,
        span.attribute(dftrace_udf::UDF_PARAMS).unwrap_or("?"),
        span.attribute(dftrace_udf::UDF_OPERATOR).unwrap_or("?"),
    );
    assert_eq!(span.attribute(dftrace_udf::UDF_ROWS), Some("200000"));
    let flame = trace.flame_graph_svg(dftrace_view::FlameWidth::Wall);
    assert!(
        flame.contains("score"),
        "the flame graph has a frame for score"
    );
    println!("the flame graph of trace {trace_id} has a frame for score");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
