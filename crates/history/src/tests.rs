//! Unit tests: the bounds, the tables over a history filled by hand, and
//! `dftrace.spans` over a written file with a broken line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{KeptQuery, QueryHistory, SpansTable, register_tables};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use dftrace_registry::{OperatorFigures, Spread};
use std::sync::Arc;

fn operator(id: u64, parent: Option<u64>, name: &str, self_time_ns: u64) -> OperatorFigures {
    OperatorFigures {
        id,
        parent,
        name: name.to_owned(),
        description: format!("{name}: x@0 > ?"),
        start_unix_ns: 1_000,
        end_unix_ns: 5_000,
        partitions: 2,
        self_time_ns: Some(self_time_ns),
        output_rows: Some(10),
        estimated_rows: Some(100),
        rows_spread: Some(Spread {
            min: 4,
            median: 4,
            max: 6,
        }),
        self_time_spread: None,
        peak_memory_bytes: None,
        spilled_bytes: None,
        metrics: vec![
            ("output_rows".to_owned(), 10),
            ("elapsed_compute_ns".to_owned(), self_time_ns as i64),
        ],
        failed: false,
    }
}

fn query(n: usize) -> KeptQuery {
    KeptQuery {
        trace_id: format!("{n:032x}"),
        run_id: format!("run-{n}"),
        fingerprint: Some("abc".to_owned()),
        sql: None,
        start_unix_ns: n as i64,
        duration_ns: 1_000 * n as i64,
        error_kind: None,
        cancelled: false,
        output_rows: Some(10),
        bytes_scanned: None,
        spilled_bytes: None,
        peak_memory_bytes: None,
        failed_reservations: None,
        storage_requests: None,
        storage_bytes_read: None,
        storage_bytes_written: None,
        operators: vec![
            operator(0, None, "ProjectionExec", 5),
            operator(1, Some(0), "FilterExec", 50),
        ],
    }
}

/// The result of `sql` on `ctx`, as an ASCII table.
async fn pretty(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

#[test]
fn the_history_keeps_the_last_queries_within_count_and_bytes() {
    let history = QueryHistory::new(3, usize::MAX);
    for n in 0..30 {
        history.keep(query(n));
    }
    let kept: Vec<String> = history.queries().iter().map(|q| q.run_id.clone()).collect();
    assert_eq!(kept, ["run-27", "run-28", "run-29"]);
    let expected: usize = (27..30).map(|n| query(n).estimated_bytes()).sum();
    assert_eq!(history.bytes(), expected);

    let one = query(0).estimated_bytes();
    let by_bytes = QueryHistory::new(100, 2 * one + one / 2);
    for n in 0..30 {
        by_bytes.keep(query(n));
    }
    assert_eq!(by_bytes.queries().len(), 2);
    assert!(by_bytes.bytes() <= 2 * one + one / 2);
}

#[tokio::test]
async fn the_tables_show_the_kept_queries_and_their_operator_trees() {
    let ctx = SessionContext::new();
    let history = Arc::new(QueryHistory::new(10, usize::MAX));
    history.keep(query(1));
    history.keep(query(2));
    register_tables(&ctx.state(), &history, "/nonexistent").unwrap();

    let text = pretty(
        &ctx,
        "SELECT run_id, operator_count, slowest_operator, slowest_self_time_ns \
         FROM dftrace.queries ORDER BY duration_ns DESC",
    )
    .await;
    assert_eq!(
        text,
        "+--------+----------------+------------------+----------------------+\n\
         | run_id | operator_count | slowest_operator | slowest_self_time_ns |\n\
         +--------+----------------+------------------+----------------------+\n\
         | run-2  | 2              | FilterExec       | 50                   |\n\
         | run-1  | 2              | FilterExec       | 50                   |\n\
         +--------+----------------+------------------+----------------------+"
    );

    // The plan tree joins back to itself; metrics are a map by name.
    let text = pretty(
        &ctx,
        "SELECT child.name, parent.name AS parent, child.metrics['elapsed_compute_ns'] AS t \
         FROM dftrace.operators child JOIN dftrace.operators parent \
           ON child.trace_id = parent.trace_id AND child.parent_id = parent.operator_id \
         WHERE child.trace_id = '00000000000000000000000000000002'",
    )
    .await;
    assert_eq!(
        text,
        "+------------+----------------+----+\n\
         | name       | parent         | t  |\n\
         +------------+----------------+----+\n\
         | FilterExec | ProjectionExec | 50 |\n\
         +------------+----------------+----+"
    );
}

/// One export request line with `spans` spans of one trace.
fn request_line(trace: &str, spans: usize) -> String {
    let spans: Vec<String> = (0..spans)
        .map(|i| {
            format!(
                r#"{{"traceId":"{trace}","spanId":"{i:016x}","name":"op{i}","startTimeUnixNano":"100","endTimeUnixNano":"{end}","attributes":[{{"key":"rows","value":{{"intValue":"{i}"}}}},{{"key":"kind","value":{{"stringValue":"k{i}"}}}}],"status":{{}}}}"#,
                end = 100 + i
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},"scopeSpans":[{{"scope":{{"name":"dftrace"}},"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

#[tokio::test]
async fn spans_are_read_from_trace_files_and_a_broken_line_is_skipped() {
    let dir = std::env::temp_dir().join(format!("dftrace-history-spans-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let text = format!(
        "{}\n{{not json\n\n{}\n",
        request_line(trace, 3),
        request_line(trace, 2)
    );
    std::fs::write(dir.join("a.jsonl"), text).unwrap();
    std::fs::write(dir.join("ignored.txt"), "not a trace file").unwrap();

    let ctx = SessionContext::new();
    let table = Arc::new(SpansTable::new(dir.display().to_string()));
    ctx.register_table("spans", Arc::clone(&table) as _)
        .unwrap();
    let text = pretty(
        &ctx,
        "SELECT name, service, duration_ns, line, int_attributes['rows'] AS rows, \
                attributes['kind'] AS kind, status \
         FROM spans ORDER BY line, name",
    )
    .await;
    assert_eq!(
        text,
        "+------+---------+-------------+------+------+------+--------+\n\
         | name | service | duration_ns | line | rows | kind | status |\n\
         +------+---------+-------------+------+------+------+--------+\n\
         | op0  | svc     | 0           | 1    | 0    | k0   | unset  |\n\
         | op1  | svc     | 1           | 1    | 1    | k1   | unset  |\n\
         | op2  | svc     | 2           | 1    | 2    | k2   | unset  |\n\
         | op0  | svc     | 0           | 4    | 0    | k0   | unset  |\n\
         | op1  | svc     | 1           | 4    | 1    | k1   | unset  |\n\
         +------+---------+-------------+------+------+------+--------+"
    );
    let count = ctx
        .sql("SELECT count(*) FROM spans")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let column = count[0].column(0).as_primitive::<Int64Type>();
    assert_eq!((column.len(), column.value(0)), (1, 5));
    // Both scans skipped line 2 and said so.
    let skipped = table.skipped_lines();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped
            .iter()
            .all(|s| s.file == dir.join("a.jsonl") && s.line == 2 && !s.error.is_empty()),
        "{skipped:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn operator_instruments_record_time_and_rows_by_operator_name() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let instruments = crate::observer::OperatorInstruments::new(&provider.meter("dftrace"));
    instruments.record(&query(1).operators);
    instruments.record(&query(2).operators);
    provider.force_flush().unwrap();

    let exported = exporter.get_finished_metrics().unwrap();
    let metrics: Vec<_> = exported
        .iter()
        .flat_map(|resource| resource.scope_metrics())
        .flat_map(|scope| scope.metrics())
        .collect();
    let find = |name: &str| {
        metrics
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let by_operator = |point_attributes: Vec<(String, String)>| -> String {
        assert_eq!(point_attributes.len(), 1, "only the operator name");
        point_attributes[0].1.clone()
    };
    match find("dftrace.operator.output_rows").data() {
        AggregatedMetrics::U64(MetricData::Sum(sum)) => {
            let mut points: Vec<(String, u64)> = sum
                .data_points()
                .map(|p| {
                    let attributes = p
                        .attributes()
                        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                        .collect();
                    (by_operator(attributes), p.value())
                })
                .collect();
            points.sort();
            assert_eq!(
                points,
                [
                    ("FilterExec".to_owned(), 20),
                    ("ProjectionExec".to_owned(), 20)
                ]
            );
        }
        other => panic!("rows: {other:?}"),
    }
    let time = find("dftrace.operator.self_time");
    assert_eq!(time.unit(), "s");
    match time.data() {
        AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
            let total: f64 = histogram.data_points().map(|p| p.sum()).sum();
            // 2 queries × (5 ns + 50 ns).
            assert!((total - 110e-9).abs() < 1e-15, "{total}");
        }
        other => panic!("self time: {other:?}"),
    }
}
