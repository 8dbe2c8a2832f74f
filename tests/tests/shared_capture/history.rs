//! dftrace-history end to end: a session with `history.enabled` runs TPC-H
//! queries; `dftrace.queries` and `dftrace.operators` hold what the
//! exported root and operator spans say, a query over them is not kept,
//! and the bound holds.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use dftrace_history::QueryHistory;
use dftrace_registry::{DftraceConfig, DftraceSession, Preset, QUERY_SPAN_NAME, keys};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::capture::{attribute, span_capture};
use dftrace_tests::dftrace_context;
use dftrace_tests::tpch::{Q1, Q3, Q6, Table, write_tables};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use std::collections::HashMap;
use std::sync::Arc;

fn history_config(max_queries: usize) -> DftraceConfig {
    DftraceConfig::builder()
        .preset(Preset::MaximalNoData)
        .set("history.enabled", true)
        .set("history.max_queries", max_queries as u64)
        .build()
        .unwrap()
}

async fn sql(ctx: &SessionContext, query: &str) -> Vec<RecordBatch> {
    ctx.sql(query).await.unwrap().collect().await.unwrap()
}

fn int(span: &SpanData, key: &str) -> Option<i64> {
    match attribute(span, key)? {
        Value::I64(v) => Some(*v),
        other => panic!("{key} is not an integer on {}: {other:?}", span.name),
    }
}

/// The column `name` of `batch` as optional integers.
fn ints(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let column = batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>();
    (0..column.len())
        .map(|i| (!column.is_null(i)).then(|| column.value(i)))
        .collect()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch.column_by_name(name).unwrap().as_string::<i32>();
    (0..column.len())
        .map(|i| column.value(i).to_owned())
        .collect()
}

/// The contents of `sql`'s single-quoted literals of four characters or
/// more (`'BUILDING'`, `'1995-03-15'`; an interval's `'1'` would match any
/// digit of a description).
fn quoted_literals(sql: &str) -> Vec<String> {
    sql.split('\'')
        .skip(1)
        .step_by(2)
        .filter(|literal| literal.len() >= 4)
        .map(str::to_owned)
        .collect()
}

fn one_batch(batches: Vec<RecordBatch>) -> RecordBatch {
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn history_of(ctx: &SessionContext) -> Arc<QueryHistory> {
    DftraceSession::of(&ctx.state())
        .and_then(|session| session.services().get::<QueryHistory>())
        .expect("the history plugin is linked and enabled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_hold_what_the_exported_spans_say_for_tpch() {
    let dir = std::env::temp_dir().join(format!("dftrace-history-tpch-{}", std::process::id()));
    let creates = write_tables(
        &dir,
        0.01,
        &[Table::Lineitem, Table::Orders, Table::Customer],
    );
    let ctx = dftrace_context(&history_config(10));
    let capture = span_capture();
    for create in &creates {
        ctx.sql(create).await.unwrap().collect().await.unwrap();
    }
    // The CREATEs' ends are told off their path: counted once told (waited
    // for here, not with flush_pending_work, which also waits for the other
    // tests of this binary).
    let history = history_of(&ctx);
    let created = creates.len();
    let told = tokio::task::spawn_blocking(move || {
        dftrace_tests::wait::poll_until(dftrace_tests::capture::TRACE_DEADLINE, || {
            history.queries().len() >= created
        })
    })
    .await
    .unwrap();
    assert!(told, "the CREATEs' ends were told");
    let before = history_of(&ctx).queries().len();

    let mut traces: Vec<(String, i64, &str, Vec<SpanData>)> = Vec::new();
    for sql in [Q1, Q3, Q6] {
        let query = run_sql(&ctx, sql, &QueryOptions::new()).await.unwrap();
        let spans = capture.ended_trace(query.ended(), &query.trace_id).await;
        let elapsed = query.elapsed.as_nanos() as i64;
        traces.push((query.trace_id.clone(), elapsed, sql, spans));
    }

    let queries = one_batch(
        sql(
            &ctx,
            "SELECT trace_id, duration_ns, output_rows, operator_count, outcome \
             FROM dftrace.queries ORDER BY start",
        )
        .await,
    );
    let trace_ids = strings(&queries, "trace_id");
    assert_eq!(
        trace_ids.len(),
        before + 3,
        "one row per query: {trace_ids:?}"
    );
    let tail = trace_ids.len() - 3;
    for (row, (trace_id, elapsed, query_sql, spans)) in traces.iter().enumerate() {
        let row = tail + row;
        assert_eq!(&trace_ids[row], trace_id);
        let root = spans.iter().find(|s| s.name == QUERY_SPAN_NAME).unwrap();
        assert_eq!(
            ints(&queries, "output_rows")[row],
            int(root, keys::QUERY_ROWS),
            "{trace_id}: rows"
        );
        // The query's time is taken when its last batch is out, before
        // run_sql measures its own elapsed time on the same clock.
        let duration = ints(&queries, "duration_ns")[row].unwrap();
        assert!(
            0 < duration && duration <= *elapsed,
            "{trace_id}: {duration} ns within run_sql's {elapsed} ns"
        );
        let operator_spans: Vec<&SpanData> = spans
            .iter()
            .filter(|s| attribute(s, keys::OPERATOR_INDEX).is_some())
            .collect();
        assert_eq!(
            ints(&queries, "operator_count")[row],
            Some(operator_spans.len() as i64),
            "{trace_id}: operators"
        );
        assert_eq!(strings(&queries, "outcome")[row], "ok");

        let operators = one_batch(
            sql(
                &ctx,
                &format!(
                    "SELECT operator_id, parent_id, name, description, self_time_ns, output_rows, \
                            estimated_rows, metrics['output_rows'] AS metric_rows \
                     FROM dftrace.operators WHERE trace_id = '{trace_id}' ORDER BY operator_id"
                ),
            )
            .await,
        );
        assert_eq!(operators.num_rows(), operator_spans.len(), "{trace_id}");
        let by_index: HashMap<i64, &SpanData> = operator_spans
            .iter()
            .map(|s| (int(s, keys::OPERATOR_INDEX).unwrap(), *s))
            .collect();
        let ids = ints(&operators, "operator_id");
        let parents = ints(&operators, "parent_id");
        let names = strings(&operators, "name");
        let descriptions = strings(&operators, "description");
        for i in 0..operators.num_rows() {
            let span = by_index[&ids[i].unwrap()];
            assert_eq!(names[i], span.name, "{trace_id} operator {i}");
            assert_eq!(
                ints(&operators, "self_time_ns")[i],
                int(span, keys::SELF_TIME_NS),
                "{trace_id} {}: self time",
                names[i]
            );
            let rows = int(span, &format!("{}output_rows", keys::METRICS_PREFIX));
            assert_eq!(ints(&operators, "output_rows")[i], rows, "{}", names[i]);
            assert_eq!(ints(&operators, "metric_rows")[i], rows, "{}", names[i]);
            assert_eq!(
                ints(&operators, "estimated_rows")[i],
                int(span, keys::ESTIMATED_ROWS),
                "{}: estimated rows",
                names[i]
            );
            // The plan tree: the span's parent is the operator parent_id
            // names, or the root for the top.
            let parent_span_id = span.parent_span_id;
            match parents[i] {
                Some(parent) => assert_eq!(
                    by_index[&parent].span_context.span_id(),
                    parent_span_id,
                    "{}: parent",
                    names[i]
                ),
                None => assert_eq!(root.span_context.span_id(), parent_span_id),
            }
            // Literal-free, as the exported `datafusion.node` is: neither
            // the SQL's quoted literals nor the folded dates and bounds.
            for literal in quoted_literals(query_sql)
                .iter()
                .map(String::as_str)
                .chain(["1998-", "0.07"])
            {
                assert!(
                    !descriptions[i].contains(literal),
                    "{}: `{literal}` in {}",
                    names[i],
                    descriptions[i]
                );
            }
        }
    }

    // Reading the history is not kept in it.
    let kept = history_of(&ctx).queries().len();
    let ended = run_sql(
        &ctx,
        "SELECT count(*) FROM dftrace.operators",
        &QueryOptions::new(),
    )
    .await
    .unwrap()
    .ended();
    // Its end has been handled (it would have been kept by now).
    ended.await;
    assert_eq!(history_of(&ctx).queries().len(), kept);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_holds_the_last_max_queries_only() {
    const KEPT: usize = 5;
    let ctx = dftrace_context(&history_config(KEPT));
    span_capture();
    let query = "SELECT v % 7 AS k, count(*) AS n FROM unnest(range(0, 1000)) AS t(v) GROUP BY k";
    let mut bytes_at = Vec::new();
    for round in 0..10 * KEPT {
        let options = QueryOptions::new().run_id(format!("round-{round:03}"));
        // A query is kept once its trace is complete, a moment after it
        // returned (its end is handled off its path).
        let ended = run_sql(&ctx, query, &options).await.unwrap().ended();
        ended.await;
        bytes_at.push(history_of(&ctx).bytes());
    }
    let rows = one_batch(sql(&ctx, "SELECT run_id FROM dftrace.queries ORDER BY start").await);
    let expected: Vec<String> = (9 * KEPT..10 * KEPT)
        .map(|round| format!("round-{round:03}"))
        .collect();
    assert_eq!(strings(&rows, "run_id"), expected);
    let history = history_of(&ctx);
    let kept_bytes: usize = history.queries().iter().map(|q| q.estimated_bytes()).sum();
    assert_eq!(history.bytes(), kept_bytes);
    // Bounded: once full, every further query replaces one of the same size.
    assert!(
        bytes_at[KEPT - 1..].windows(2).all(|w| w[0] == w[1]),
        "bytes once full: {bytes_at:?}"
    );
    eprintln!(
        "history: {} queries hold {} bytes ({} per query, {} operators each)",
        KEPT,
        history.bytes(),
        history.bytes() / KEPT,
        history.queries()[0].operators.len()
    );
}
