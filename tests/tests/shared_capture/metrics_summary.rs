//! dftrace-metrics-summary end to end: on TPC-H Q1, Q3 and Q6 the summary's
//! figures are the ones EXPLAIN ANALYZE shows for the same executed plan;
//! the plugin puts them on the root span as typed attributes, and they reach
//! the real rotel collector as Int/Double.

// Linked so its plugin registers: storage bytes per query.
use dftrace_object_store_registry as _;

use datafusion::common::display::human_readable::{human_readable_count, human_readable_size};
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::prelude::SessionContext;
use dftrace_metrics_summary::summarize;
use dftrace_registry::{DftraceConfig, QUERY_SPAN_NAME, RegistryStateBuilderExt};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::capture::{attribute, span_capture};
use dftrace_tests::rotel::Rotel;
use dftrace_tests::rows::explain_metric;
use dftrace_tests::tpch::{Q1, Q3, Q6, Table, write_tables};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_matches_explain_analyze_for_tpch_q1_q3_q6()
-> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = std::env::temp_dir().join(format!("dftrace-metrics-tpch-{}", std::process::id()));
    let creates = write_tables(
        &dir,
        0.01,
        &[Table::Lineitem, Table::Orders, Table::Customer],
    );
    let config = DftraceConfig::builder().build()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        .build_dftrace()?;
    let ctx = SessionContext::new_with_state(state);
    for create in &creates {
        ctx.sql(create).await?;
    }
    span_capture();
    for (name, sql) in [("Q1", Q1), ("Q3", Q3), ("Q6", Q6)] {
        let query = run_sql(&ctx, sql, &QueryOptions::new()).await?;
        let summary = summarize(&query.plan);
        let explain = DisplayableExecutionPlan::with_metrics(query.plan.as_ref())
            .indent(true)
            .to_string();
        let lines: Vec<&str> = explain.lines().collect();

        assert_eq!(
            lines.len(),
            summary.operator_count,
            "{name}: one line per operator"
        );
        let returned: usize = query.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(summary.output_rows, Some(returned as u64), "{name}");
        for (operator, line) in summary.operators.iter().zip(&lines) {
            assert!(
                line.trim_start()
                    .starts_with(operator.name.split('(').next().unwrap_or_default()),
                "{name}: {} vs {line}",
                operator.name
            );
            let rows = operator
                .output_rows
                .map(|r| human_readable_count(r as usize));
            assert_eq!(
                rows.as_deref(),
                explain_metric(line, "output_rows"),
                "{name} {}: output_rows",
                operator.name
            );
        }
        assert_eq!(
            summary
                .output_bytes
                .map(|b| human_readable_size(b as usize))
                .as_deref(),
            explain_metric(lines[0], "output_bytes"),
            "{name}: output_bytes"
        );
        assert_eq!(
            summary.output_batches.map(|b| b.to_string()).as_deref(),
            explain_metric(lines[0], "output_batches")
        );
        let scans: Vec<&&str> = lines
            .iter()
            .filter(|l| l.trim_start().starts_with("DataSourceExec"))
            .collect();
        assert!(
            summary.bytes_scanned.unwrap_or(0) > 0,
            "{name}: bytes scanned"
        );
        if let [scan] = scans.as_slice() {
            assert_eq!(
                summary
                    .bytes_scanned
                    .map(|b| human_readable_count(b as usize))
                    .as_deref(),
                explain_metric(scan, "bytes_scanned"),
                "{name}: bytes_scanned"
            );
            assert_eq!(
                summary.files_opened.map(|f| f.to_string()).as_deref(),
                explain_metric(scan, "files_opened")
            );
        }

        // The plugin recorded the same figures, typed, on the root span.
        let (trace_id, ended) = (query.trace_id.clone(), query.ended());
        drop(query);
        let spans = span_capture().ended_trace(ended, &trace_id).await;
        let root = spans
            .iter()
            .find(|s| s.name == QUERY_SPAN_NAME)
            .expect("root span");
        assert_eq!(
            attribute(root, "dftrace.metrics.output_rows"),
            Some(&opentelemetry::Value::I64(returned as i64)),
            "{name}"
        );
        let storage = attribute(root, "dftrace.metrics.storage_bytes_read");
        assert!(
            matches!(storage, Some(opentelemetry::Value::I64(bytes)) if *bytes > 0),
            "{name}: storage bytes read from the object store plugin: {storage:?}"
        );
        assert_eq!(
            attribute(root, "dftrace.metrics.operator_count"),
            Some(&opentelemetry::Value::I64(summary.operator_count as i64))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn typed_attributes_reach_rotel_as_int_and_double() {
    let rotel = Rotel::start();
    // Isolated: the flush at exit bounded only against a hang.
    let output = dftrace_tests::isolated_command(env!("CARGO_BIN_EXE_emit_spans"))
        .arg("--query")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .expect("emit_spans runs");
    dftrace_tests::assert_success(&output);
    assert_eq!(
        rotel.wait_for_spans(QUERY_SPAN_NAME, 1, Duration::from_secs(20)),
        1
    );
    let log = rotel.output();
    for expected in [
        "dftrace.metrics.output_rows: Int(3)",
        "dftrace.metrics.operator_count: Int(",
        "dftrace.metrics.elapsed_compute_ns: Int(",
        "dftrace.metrics.filter_selectivity: Double(0.8)",
        "dftrace.rows: Int(3)",
    ] {
        assert!(log.contains(expected), "`{expected}` not in rotel's output");
    }
}
