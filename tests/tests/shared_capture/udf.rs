//! dftrace-udf end to end: a host scalar function that spins a known time
//! per batch shows up under the query root with its calls, rows and time,
//! and so do a host aggregate function (its accumulators' calls) and a host
//! window function (its evaluators' calls); results and `SHOW FUNCTIONS`
//! are the same with and without the plugin; a failing function fails the
//! query as before and counts its error.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::cast::as_int64_array;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, PartitionEvaluator, ScalarUDF, Volatility, WindowUDF, create_udaf,
    create_udwf,
};
use datafusion::prelude::{SessionConfig, SessionContext};
// Linked for its plugin: the metrics summary's totals are checked.
use dftrace_metrics_summary as _;
use dftrace_registry::keys::OPERATOR_INDEX;
use dftrace_registry::{DftraceConfig, QUERY_SPAN_NAME, RegistryStateBuilderExt};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::capture::{attribute, attribute_string, span_capture, span_named};
use dftrace_tests::functions::{add_scalar_functions, explode, int64_function, map_int64};
use dftrace_tests::rows::canonical_rows;
use dftrace_udf::{
    UDF_CALLS, UDF_ERRORS, UDF_KIND, UDF_NAME, UDF_OPERATOR, UDF_PARAMS, UDF_ROWS, UDF_TIME_NS,
    UDF_VERSION,
};
use opentelemetry::Value;
use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::SpanData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `spin` spends per batch, at least.
const SPIN: Duration = Duration::from_millis(3);

/// `spin(x)`: `x + 1`, after spinning [`SPIN`] per batch.
fn spin() -> ScalarUDF {
    int64_function("spin", |args| {
        spin_for(SPIN);
        map_int64(args, |v| v + 1)
    })
}

fn spin_for(duration: Duration) {
    let started = Instant::now();
    while started.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// `spin_sum(x)`'s state: the sum so far. Spins [`SPIN`] per
/// `update_batch`.
#[derive(Debug, Default)]
struct SpinSum {
    sum: i64,
}

impl Accumulator for SpinSum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        spin_for(SPIN);
        self.sum += as_int64_array(&values[0])?.iter().flatten().sum::<i64>();
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.sum)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.sum))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.sum += as_int64_array(&states[0])?.iter().flatten().sum::<i64>();
        Ok(())
    }
}

/// `spin_sum(x)`: the host's own `sum`, spinning [`SPIN`] per batch fed to
/// each accumulator.
fn spin_sum() -> AggregateUDF {
    create_udaf(
        "spin_sum",
        vec![DataType::Int64],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(SpinSum::default()))),
        Arc::new(vec![DataType::Int64]),
    )
}

/// `place(x) OVER (..)`: the row's position in its window partition,
/// 1 based, after spinning [`SPIN`] per partition.
#[derive(Debug)]
struct Position;

impl PartitionEvaluator for Position {
    fn evaluate_all(
        &mut self,
        _values: &[ArrayRef],
        num_rows: usize,
    ) -> datafusion::error::Result<ArrayRef> {
        spin_for(SPIN);
        Ok(Arc::new(Int64Array::from_iter_values(1..=num_rows as i64)))
    }
}

fn place() -> WindowUDF {
    create_udwf(
        "place",
        DataType::Int64,
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|| Ok(Box::new(Position))),
    )
}

fn session(traced: bool) -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_batch_size(1000)
        // One partition: one stream calls each function, batch after batch.
        .with_target_partitions(1);
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    // Next to DataFusion's own functions, which stay as they are.
    add_scalar_functions(&mut builder, [spin(), explode()]);
    builder
        .aggregate_functions()
        .get_or_insert_with(Vec::new)
        .push(Arc::new(spin_sum()));
    builder
        .window_functions()
        .get_or_insert_with(Vec::new)
        .push(Arc::new(place()));
    let state = if traced {
        let dftrace = DftraceConfig::builder()
            .set("udf.versions.spin", "2.1.0")
            .build()
            .unwrap();
        builder
            .with_dftrace(&dftrace)
            .unwrap()
            .build_dftrace()
            .unwrap()
    } else {
        builder.build()
    };
    let ctx = SessionContext::new_with_state(state);
    // Ten batches of 1,000 rows in one partition: ten calls per function.
    let batches: Vec<RecordBatch> = (0..10)
        .map(|b| {
            let values = Int64Array::from_iter_values(b * 1000..(b + 1) * 1000);
            RecordBatch::try_from_iter([("v", Arc::new(values) as ArrayRef)]).unwrap()
        })
        .collect();
    let table = MemTable::try_new(batches[0].schema(), vec![batches]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Value::I64(v)) => *v,
        other => panic!(
            "{key} on {}: {other:?}; it has {:?}",
            span.name,
            span.attributes
                .iter()
                .map(|kv| kv.key.as_str())
                .collect::<Vec<_>>()
        ),
    }
}

async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
    canonical_rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap()).unwrap()
}

const QUERY: &str = "SELECT v % 10 AS k, sum(spin(v)) AS s FROM t GROUP BY k";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_function_is_timed_and_counted_under_its_query() {
    let capture = span_capture();
    let traced = session(true);
    let plain = session(false);
    assert_eq!(rows(&traced, QUERY).await, rows(&plain, QUERY).await);
    let functions = "SHOW FUNCTIONS LIKE '%'";
    assert_eq!(
        rows(&traced, functions).await,
        rows(&plain, functions).await,
        "SHOW FUNCTIONS is unchanged"
    );

    let query = run_sql(&traced, QUERY, &QueryOptions::new()).await.unwrap();
    let spans = capture.ended_trace(query.ended(), &query.trace_id).await;
    let root = spans.iter().find(|s| s.name == QUERY_SPAN_NAME).unwrap();
    let function = spans
        .iter()
        .find(|s| attribute(s, UDF_NAME).is_some())
        .unwrap_or_else(|| {
            panic!(
                "no function span in {:?}",
                spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
            )
        });
    assert_eq!(function.name, "spin");
    let callers = callers(function, &spans);
    assert_eq!(
        callers
            .iter()
            .map(|s| s.name.to_string())
            .collect::<Vec<_>>(),
        ["AggregateExec"],
        "evaluated by the aggregate that sums it"
    );
    assert_eq!(int(function, UDF_ROWS), 10_000, "every input row");
    let calls = int(function, UDF_CALLS);
    assert_eq!(calls, 10, "one call per batch");
    assert!(
        int(function, UDF_TIME_NS) >= calls * SPIN.as_nanos() as i64,
        "at least {SPIN:?} per call: {} ns over {calls} calls",
        int(function, UDF_TIME_NS)
    );
    assert_eq!(int(function, UDF_ERRORS), 0);
    assert_eq!(
        int(root, "dftrace.metrics.function_time_ns"),
        int(function, UDF_TIME_NS),
        "the metrics summary's total: spin is the only function observed"
    );
    assert_eq!(
        attribute_string(function, UDF_VERSION),
        Some("2.1.0".to_owned())
    );
    assert_eq!(
        attribute_string(function, UDF_PARAMS),
        Some("Int64".to_owned()),
        "types, never values"
    );
}

/// The operators `function` says called it (`udf.operator`): each is a span
/// of the trace, and the function hangs under the one caller or, with
/// several, under the root.
fn callers<'a>(function: &SpanData, spans: &'a [SpanData]) -> Vec<&'a SpanData> {
    let listed = attribute(function, UDF_OPERATOR)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_else(|| panic!("{} has no {UDF_OPERATOR}", function.name));
    let callers: Vec<&SpanData> = listed
        .split(", ")
        .map(|caller| {
            let (name, index) = caller.split_once('#').expect("name#index");
            let index: i64 = index.parse().expect("an operator index");
            spans
                .iter()
                .find(|s| {
                    s.name == name && attribute(s, OPERATOR_INDEX) == Some(&Value::I64(index))
                })
                .unwrap_or_else(|| panic!("no operator span {caller} in the trace"))
        })
        .collect();
    let root = spans.iter().find(|s| s.name == QUERY_SPAN_NAME).unwrap();
    let expected_parent = match callers.as_slice() {
        [caller] => caller.span_context.span_id(),
        _ => root.span_context.span_id(),
    };
    assert_eq!(
        function.parent_span_id, expected_parent,
        "{} hangs under its one caller, else the root ({listed})",
        function.name
    );
    callers
}

/// The span of function `name` in the trace of `sql`, run traced, after
/// checking the results against an untraced session.
async fn function_span(sql: &str, name: &str) -> (SpanData, Vec<String>) {
    let capture = span_capture();
    let traced = session(true);
    assert_eq!(
        rows(&traced, sql).await,
        rows(&session(false), sql).await,
        "{sql}: the same results with and without the plugin"
    );
    let query = run_sql(&traced, sql, &QueryOptions::new()).await.unwrap();
    let spans = capture.ended_trace(query.ended(), &query.trace_id).await;
    let function = span_named(&spans, name).clone();
    let callers = callers(&function, &spans)
        .into_iter()
        .map(|s| s.name.to_string())
        .collect::<Vec<_>>();
    assert_eq!(
        attribute_string(&function, UDF_PARAMS),
        Some("Int64".to_owned()),
        "types, never values"
    );
    assert_eq!(int(&function, UDF_ERRORS), 0);
    (function, callers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_aggregate_function_is_timed_and_counted_under_its_query() {
    // Ten groups: DataFusion makes an accumulator per group (the function
    // has no groups accumulator) and feeds each a slice of every batch.
    let (function, callers) = function_span(
        "SELECT v % 10 AS k, spin_sum(v) AS s FROM t GROUP BY k",
        "spin_sum",
    )
    .await;
    assert!(
        !callers.is_empty() && callers.iter().all(|name| name == "AggregateExec"),
        "called in the aggregates: {callers:?}"
    );
    assert_eq!(
        attribute_string(&function, UDF_KIND),
        Some("aggregate".to_owned())
    );
    assert_eq!(int(&function, UDF_ROWS), 10_000, "every input row, once");
    // Ten batches over ten groups: at least a hundred spinning calls.
    let time = int(&function, UDF_TIME_NS);
    assert!(
        time >= 100 * SPIN.as_nanos() as i64,
        "at least 100 × {SPIN:?} inside the accumulators: {time} ns"
    );
    assert!(int(&function, UDF_CALLS) >= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_a_filter_clause_rejects_are_not_counted_as_fed_to_an_aggregate() {
    let (function, _) = function_span(
        "SELECT v % 10 AS k, spin_sum(v) FILTER (WHERE v < 2500) AS s FROM t GROUP BY k",
        "spin_sum",
    )
    .await;
    assert_eq!(int(&function, UDF_ROWS), 2_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_window_function_is_timed_and_counted_under_its_query() {
    let (function, callers) = function_span(
        "SELECT v, place(v) OVER (PARTITION BY v % 10 ORDER BY v) AS p FROM t",
        "place",
    )
    .await;
    assert!(
        callers.len() == 1 && callers[0].contains("WindowAggExec"),
        "called in the window operator: {callers:?}"
    );
    assert_eq!(
        attribute_string(&function, UDF_KIND),
        Some("window".to_owned())
    );
    assert_eq!(int(&function, UDF_ROWS), 10_000, "every row evaluated once");
    let calls = int(&function, UDF_CALLS);
    // One `evaluate_all` per window partition at least.
    assert!(calls >= 10, "{calls} calls");
    let time = int(&function, UDF_TIME_NS);
    assert!(
        time >= calls * SPIN.as_nanos() as i64,
        "at least {SPIN:?} per call: {time} ns over {calls} calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_function_fails_its_query_as_before_and_counts_the_error() {
    let capture = span_capture();
    let sql = "SELECT explode(v) FROM t";
    let plain = session(false).sql(sql).await.unwrap().collect().await;
    let traced = session(true);
    let error = run_sql(&traced, sql, &QueryOptions::new())
        .await
        .expect_err("explode fails");
    assert_eq!(
        error.strip_backtrace(),
        plain.expect_err("explode fails").strip_backtrace()
    );
    // The failed query's root: the one with an error whose trace holds the
    // function's span (other tests of this binary fail queries too). It
    // closes once its operator spans are built, after `run_sql` returns.
    let failed_root = || {
        capture
            .trace_spans_named(QUERY_SPAN_NAME)
            .into_iter()
            .find(|root| {
                matches!(root.status, Status::Error { .. })
                    && capture
                        .trace(&root.span_context.trace_id().to_string())
                        .iter()
                        .any(|span| span.name == "explode")
            })
    };
    let arrived = tokio::task::spawn_blocking(move || {
        dftrace_tests::wait::poll_until(dftrace_tests::capture::TRACE_DEADLINE, || {
            failed_root().is_some()
        })
    })
    .await
    .unwrap_or(false);
    assert!(arrived, "the failed query's root span arrived");
    let root = failed_root().expect("the failed query's root span");
    let trace_id = root.span_context.trace_id().to_string();
    let spans = capture.trace_with_root(&trace_id).await;
    let failed = span_named(&spans, "explode");
    assert!(
        matches!(root.status, Status::Error { .. }),
        "{:?}",
        root.status
    );
    // One partition: its first call fails and ends the query.
    assert_eq!((int(failed, UDF_CALLS), int(failed, UDF_ERRORS)), (1, 1));
}
