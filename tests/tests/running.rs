//! What runs now, as a host sees it: a query held mid-stream by a table of
//! the host's (its stream waits on a gate the test opens) shows in
//! `dftrace.running` with the rows it let through and its operators in
//! `dftrace.running_operators`; once released it leaves them and its row in
//! `dftrace.queries` says what its span says. A query whose stream the host
//! drops, or whose future it drops, ends as `cancelled` with the operators
//! that ran, and nothing of it stays in flight.
//!
//! The tests take turns (`SERIAL`): they count the process's queries in
//! flight.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use dftrace_history as _;
use dftrace_metrics_summary as _;
use dftrace_registry::{DftraceConfig, Preset, RegistryStateBuilderExt, keys, queries_in_flight};
use dftrace_tests::capture::{attribute, span_capture};
use dftrace_tests::rows::{int_column, string_column};
use futures::StreamExt;
use opentelemetry::Value;
use opentelemetry::trace::TraceContextExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, Semaphore};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Rows per batch of the held table.
const BATCH: i64 = 10;

/// Where the held table's stream stops: it says when it has got there (every
/// batch before it has then passed up through the plan: the plan polled for
/// the next), and goes on once the test opens it.
#[derive(Debug)]
struct Gate {
    reached: Notify,
    open: Semaphore,
}

impl Gate {
    fn closed() -> Arc<Gate> {
        Arc::new(Gate {
            reached: Notify::new(),
            open: Semaphore::new(0),
        })
    }
}

/// A table whose one partition yields `before` batches, then waits for
/// the gate to open, then yields `after` more.
#[derive(Debug)]
struct HeldPartition {
    schema: SchemaRef,
    gate: Arc<Gate>,
    before: i64,
    after: i64,
}

impl PartitionStream for HeldPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = Arc::clone(&self.schema);
        let gate = Arc::clone(&self.gate);
        let (before, after) = (self.before, self.after);
        let batch = move |n: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from_iter_values(
                    n * BATCH..(n + 1) * BATCH,
                ))],
            )
            .map_err(Into::into)
        };
        let batches = futures::stream::unfold(0_i64, move |n| {
            let gate = Arc::clone(&gate);
            let batch = batch.clone();
            async move {
                if n == before + after {
                    return None;
                }
                if n == before {
                    gate.reached.notify_one();
                    gate.open
                        .acquire()
                        .await
                        .expect("the gate stays open")
                        .forget();
                }
                Some((batch(n), n + 1))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

/// A traced session whose table `held` yields `before` batches, then waits
/// for the returned gate to open, then yields `after` more.
fn held_session(before: i64, after: i64) -> (Arc<SessionContext>, Arc<Gate>) {
    let gate = Gate::closed();
    let config = DftraceConfig::builder()
        .preset(Preset::MaximalNoData)
        .set("history.enabled", true)
        .build()
        .unwrap();
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(1))
        .with_default_features()
        .with_dftrace(&config)
        .and_then(|builder| builder.build_dftrace())
        .unwrap();
    let ctx = SessionContext::new_with_state(state);
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let held = HeldPartition {
        schema: Arc::clone(&schema),
        gate: Arc::clone(&gate),
        before,
        after,
    };
    let table = StreamingTable::try_new(schema, vec![Arc::new(held)]).unwrap();
    ctx.register_table("held", Arc::new(table)).unwrap();
    (Arc::new(ctx), gate)
}

/// A request span of the host's and its trace id.
fn request() -> (tracing::Span, String) {
    let span = tracing::info_span!("request");
    let trace_id = span.context().span().span_context().trace_id().to_string();
    (span, trace_id)
}

/// Runs `work` on a task of its own under the host's `span`, with its own
/// handle on `ctx`.
fn spawn_under<F>(
    span: tracing::Span,
    ctx: &Arc<SessionContext>,
    work: impl FnOnce(Arc<SessionContext>) -> F,
) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(work(Arc::clone(ctx)).instrument(span))
}

async fn sql(ctx: &SessionContext, query: &str) -> Vec<RecordBatch> {
    ctx.sql(query).await.unwrap().collect().await.unwrap()
}

async fn running_rows(ctx: &SessionContext, trace_id: &str) -> Vec<RecordBatch> {
    sql(
        ctx,
        &format!(
            "SELECT phase, output_rows, operator_count FROM dftrace.running \
             WHERE trace_id = '{trace_id}'"
        ),
    )
    .await
}

/// The outcome `dftrace.queries` keeps for the trace's query.
async fn outcome(ctx: &SessionContext, trace_id: &str) -> Vec<String> {
    let sql_text = format!("SELECT outcome FROM dftrace.queries WHERE trace_id = '{trace_id}'");
    string_column(&sql(ctx, &sql_text).await, "outcome")
}

/// Once the ends of the queries so far (the test's reads of the history
/// too) are told, off their path, none is in flight.
fn assert_none_in_flight() {
    assert!(dftrace_registry::flush_pending_work(Duration::from_secs(
        60
    )));
    assert_eq!(queries_in_flight(), 0, "no query in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_query_shows_in_running_with_its_rows_so_far() {
    let _turn = SERIAL.lock().await;
    let capture = span_capture();
    let (ctx, gate) = held_session(2, 1);
    let (span, trace_id) = request();
    let query = spawn_under(span, &ctx, |ctx| async move {
        ctx.sql("SELECT v FROM held").await?.collect().await
    });
    // Two batches let through: 20 rows so far, the query executing.
    gate.reached.notified().await;
    let running = running_rows(&ctx, &trace_id).await;
    assert_eq!(int_column(&running, "output_rows"), [Some(20)]);
    assert_eq!(string_column(&running, "phase"), ["executing"]);
    let operators = sql(
        &ctx,
        &format!(
            "SELECT operator_id, parent_id, name, output_rows, partitions_started, \
             partitions_done, partitions FROM dftrace.running_operators \
             WHERE trace_id = '{trace_id}' ORDER BY operator_id"
        ),
    )
    .await;
    let names = string_column(&operators, "name");
    assert!(!names.is_empty(), "its operators show");
    assert_eq!(int_column(&operators, "operator_id")[0], Some(0));
    assert_eq!(
        int_column(&operators, "output_rows")[0],
        Some(20),
        "{names:?}"
    );
    assert_eq!(
        int_column(&operators, "partitions_done")[0],
        Some(0),
        "not done"
    );
    assert_eq!(int_column(&operators, "partitions_started")[0], Some(1));
    assert_eq!(int_column(&operators, "partitions")[0], Some(1));
    assert_eq!(
        int_column(&running, "operator_count"),
        [Some(names.len() as i64)]
    );

    gate.open.add_permits(1);
    let rows: usize = query
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    assert_eq!(rows, 30);
    let (root, spans) = capture.root_and_operators(&trace_id).await;
    // Once its end is told, it is in dftrace.queries and no longer running.
    assert!(
        running_rows(&ctx, &trace_id)
            .await
            .iter()
            .all(|b| b.num_rows() == 0)
    );
    let kept = sql(
        &ctx,
        &format!(
            "SELECT output_rows, outcome, operator_count FROM dftrace.queries \
             WHERE trace_id = '{trace_id}'"
        ),
    )
    .await;
    let span_rows = match attribute(&root, keys::QUERY_ROWS) {
        Some(Value::I64(rows)) => *rows,
        other => panic!("rows on the root: {other:?}"),
    };
    assert_eq!(int_column(&kept, "output_rows"), [Some(span_rows)]);
    assert_eq!(span_rows, 30);
    assert_eq!(string_column(&kept, "outcome"), ["ok"]);
    assert_eq!(
        int_column(&kept, "operator_count"),
        [Some(spans.len() as i64)]
    );
    assert_eq!(
        spans.len(),
        names.len(),
        "the operators that ran, running and ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_ends_as_cancelled_with_what_ran() {
    let _turn = SERIAL.lock().await;
    let capture = span_capture();
    let (ctx, _gate) = held_session(2, 1);
    let (span, trace_id) = request();
    async {
        let mut stream = ctx
            .sql("SELECT v FROM held")
            .await
            .unwrap()
            .execute_stream()
            .await
            .unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.num_rows(), BATCH as usize);
        // The host stops reading.
        drop(stream);
    }
    .instrument(span)
    .await;
    let (root, operators) = capture.root_and_operators(&trace_id).await;
    assert_eq!(
        attribute(&root, keys::QUERY_CANCELLED),
        Some(&Value::Bool(true)),
        "{root:#?}"
    );
    assert!(
        matches!(root.status, opentelemetry::trace::Status::Unset),
        "{:?}",
        root.status
    );
    assert!(!operators.is_empty(), "the operators that ran");
    // StreamingTableExec reports no metrics of its own: its span is there.
    assert!(
        operators.iter().any(|op| op.name == "StreamingTableExec"),
        "the scan that ran: {operators:#?}"
    );
    assert_eq!(outcome(&ctx, &trace_id).await, ["cancelled"]);
    assert_none_in_flight();
    assert!(
        running_rows(&ctx, &trace_id)
            .await
            .iter()
            .all(|b| b.num_rows() == 0),
        "no longer running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_run_sql_future_ends_as_cancelled() {
    let _turn = SERIAL.lock().await;
    let capture = span_capture();
    let (ctx, gate) = held_session(1, 1);
    let (span, trace_id) = request();
    let task = spawn_under(span, &ctx, |ctx| async move {
        let options = dftrace_rules::QueryOptions::new();
        dftrace_rules::run_sql(&ctx, "SELECT v FROM held", &options).await
    });
    gate.reached.notified().await;
    assert_eq!(
        int_column(&running_rows(&ctx, &trace_id).await, "output_rows"),
        [Some(BATCH)],
        "the query held after its first batch"
    );
    // The host gives up on it: its future is dropped.
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let (root, operators) = capture.root_and_operators(&trace_id).await;
    assert_eq!(
        attribute(&root, keys::QUERY_CANCELLED),
        Some(&Value::Bool(true))
    );
    assert!(!operators.is_empty());
    assert_none_in_flight();
    assert_eq!(outcome(&ctx, &trace_id).await, ["cancelled"]);
}
