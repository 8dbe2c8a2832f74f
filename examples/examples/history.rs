//! Ask the traces in SQL, on the facade (features `history` and `memory`):
//! a host session with `history.enabled` gets `dftrace.queries`,
//! `dftrace.operators`, `dftrace.spans`, `dftrace.running` and
//! `dftrace.running_operators`. A query held mid-stream by a table of the
//! host's (its stream waits on a gate the example opens) shows in
//! `dftrace.running` with its rows so far; once released, it is in
//! `dftrace.queries` with its operators in `dftrace.operators`.
//!
//! Run: `cargo run -p dftrace-examples --example history`.

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use dftrace::SessionStateBuilderExt;
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};

/// Rows per batch of the held table; batches before and after its gate.
const BATCH: i64 = 10;
const BEFORE: i64 = 3;
const AFTER: i64 = 2;

/// Where the held table's stream stops: it says when it got there (every
/// batch before it has then passed up through the plan, which polled for
/// the next), and goes on once the example opens it.
#[derive(Debug)]
struct Gate {
    reached: Notify,
    open: Semaphore,
}

/// A host table whose stream yields `BEFORE` batches, waits for the gate,
/// then yields `AFTER` more: a long query, held where the example wants it.
#[derive(Debug)]
struct Held {
    schema: SchemaRef,
    gate: Arc<Gate>,
}

impl PartitionStream for Held {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (schema, gate) = (Arc::clone(&self.schema), Arc::clone(&self.gate));
        let batches = futures::stream::unfold(0_i64, move |n| {
            let (schema, gate) = (Arc::clone(&schema), Arc::clone(&gate));
            async move {
                if n == BEFORE + AFTER {
                    return None;
                }
                if n == BEFORE {
                    gate.reached.notify_one();
                    // The gate is never closed: acquiring fails only then.
                    gate.open.acquire().await.ok()?.forget();
                }
                let values = Int64Array::from_iter_values(n * BATCH..(n + 1) * BATCH);
                Some((
                    RecordBatch::try_new(schema, vec![Arc::new(values)]).map_err(Into::into),
                    n + 1,
                ))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

async fn show(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    println!("{sql}\n{}\n", pretty_format_batches(&batches)?);
    Ok(batches)
}

/// The first row's first column, an integer.
fn first_int(batches: &[RecordBatch]) -> Option<i64> {
    let batch = batches.iter().find(|batch| batch.num_rows() > 0)?;
    Some(batch.column(0).as_primitive::<Int64Type>().value(0))
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let traces =
        std::env::temp_dir().join(format!("dftrace-history-example-{}", std::process::id()));
    let dftrace = dftrace::init_with(
        dftrace::config_builder()
            .preset(dftrace::Preset::MaximalNoData)
            .set("history.enabled", true)
            .set("memory.enabled", true)
            .set("export.sink", "file")
            .set("export.file.dir", traces.display().to_string())
            .set("history.spans_path", traces.display().to_string())
            .build()?,
    )?;
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(1))
        .with_default_features()
        .build_with_dftrace(&dftrace)?;
    let ctx = Arc::new(SessionContext::new_with_state(state));
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let gate = Arc::new(Gate {
        reached: Notify::new(),
        open: Semaphore::new(0),
    });
    let held = Held {
        schema: Arc::clone(&schema),
        gate: Arc::clone(&gate),
    };
    ctx.register_table(
        "events",
        Arc::new(StreamingTable::try_new(schema, vec![Arc::new(held)])?),
    )?;

    // A query that stops at the gate, run as a service would: in a task.
    let query = {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            ctx.sql("SELECT v, v * 2 AS twice FROM events")
                .await?
                .collect()
                .await
        })
    };
    gate.reached.notified().await;

    // The held query, and the query reading the table (itself in flight);
    // not a query that has returned and whose end is being recorded off its
    // path (`ending`).
    let running = show(
        &ctx,
        "SELECT phase, output_rows, operator_count FROM dftrace.running \
         WHERE phase <> 'ending' ORDER BY start",
    )
    .await?;
    let operators = show(
        &ctx,
        "SELECT operator_id AS id, parent_id AS parent, name, output_rows, batches, \
         partitions_done AS done, partitions FROM dftrace.running_operators \
         WHERE trace_id = (SELECT trace_id FROM dftrace.running ORDER BY start LIMIT 1) \
         ORDER BY operator_id",
    )
    .await?;
    assert_eq!(rows(&running), 2, "the held query and the one reading it");
    let held_rows = "SELECT output_rows FROM dftrace.running WHERE phase = 'executing'";
    assert_eq!(
        first_int(&ctx.sql(held_rows).await?.collect().await?),
        Some(BEFORE * BATCH),
        "the rows it has returned so far"
    );
    let held_trace = ctx
        .sql("SELECT trace_id FROM dftrace.running WHERE phase = 'executing'")
        .await?
        .collect()
        .await?;
    let held_trace = held_trace
        .first()
        .filter(|batch| batch.num_rows() == 1)
        .map(|batch| batch.column(0).as_string::<i32>().value(0).to_owned())
        .ok_or("one query executing")?;
    assert!(rows(&operators) >= 2, "the held query's operators");

    gate.open.add_permits(1);
    let result = query.await??;
    assert_eq!(rows(&result) as i64, (BEFORE + AFTER) * BATCH);
    // Its end is told off its path: flush waits until it is.
    assert!(dftrace.flush(), "its end is told");

    // The held query, kept (queries reading dftrace.running are kept too:
    // they were running queries themselves).
    let kept = show(
        &ctx,
        &format!(
            "SELECT outcome, output_rows, operator_count FROM dftrace.queries \
             WHERE trace_id = '{held_trace}'"
        ),
    )
    .await?;
    assert_eq!(rows(&kept), 1);
    let kept_rows =
        format!("SELECT output_rows FROM dftrace.queries WHERE trace_id = '{held_trace}'");
    assert_eq!(
        first_int(&ctx.sql(&kept_rows).await?.collect().await?),
        Some((BEFORE + AFTER) * BATCH),
        "its rows in dftrace.queries"
    );
    // A finished query has left dftrace.running.
    let still = format!("SELECT count(*) FROM dftrace.running WHERE trace_id = '{held_trace}'");
    assert_eq!(
        first_int(&ctx.sql(&still).await?.collect().await?),
        Some(0),
        "a finished query leaves dftrace.running"
    );
    show(
        &ctx,
        &format!(
            "SELECT operator_id AS id, name, output_rows FROM dftrace.operators \
             WHERE trace_id = '{held_trace}' ORDER BY operator_id"
        ),
    )
    .await?;

    let report = dftrace.shutdown();
    println!("held query seen running, then kept: {report}");
    std::fs::remove_dir_all(&traces)?;
    Ok(())
}
