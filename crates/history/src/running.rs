//! `dftrace.running` and `dftrace.running_operators`: the session's queries
//! in flight and their operators, read from the queries themselves at each
//! scan (a query that ends leaves them once it is in `dftrace.queries`).

use crate::snapshot::{SnapshotTable, ints, strings, timestamps};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use dftrace_registry::saturating_i64;
use dftrace_registry::{RunningOperator, RunningQueries, RunningSnapshot};
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Not marked as a history table: a query reading what runs is kept like
/// any other (it is one of the running queries itself).
fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

static RUNNING_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, true),
        Field::new(
            "start",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("elapsed_ns", DataType::Int64, false),
        Field::new("phase", DataType::Utf8, false),
        Field::new("output_rows", DataType::Int64, false),
        Field::new("peak_memory_bytes", DataType::Int64, true),
        Field::new("operator_count", DataType::Int64, false),
    ])
});

static RUNNING_OPERATORS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("operator_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, false),
        Field::new("output_rows", DataType::Int64, false),
        Field::new("batches", DataType::Int64, false),
        Field::new("partitions_started", DataType::Int64, false),
        Field::new("partitions_done", DataType::Int64, false),
        Field::new("partitions", DataType::Int64, false),
    ])
});

fn unix_ns(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| saturating_i64(since.as_nanos()))
}

fn running_batch(queries: &[RunningSnapshot]) -> Result<RecordBatch> {
    let now = SystemTime::now();
    let columns = vec![
        strings(queries, |query| query.trace_id.as_str()),
        strings(queries, |query| query.run_id.as_str()),
        strings(queries, |query| query.fingerprint.as_deref()),
        timestamps(queries, |query| unix_ns(query.started)),
        ints(queries, |query| {
            let took = now.duration_since(query.started).unwrap_or_default();
            Some(took.as_nanos())
        }),
        strings(queries, |query| query.phase.as_str()),
        ints(queries, |query| Some(query.output_rows)),
        ints(queries, |query| query.peak_memory_bytes),
        ints(queries, |query| Some(query.operators.len())),
    ];
    Ok(RecordBatch::try_new(Arc::clone(&RUNNING_SCHEMA), columns)?)
}

fn running_operators_batch(queries: &[RunningSnapshot]) -> Result<RecordBatch> {
    let rows: Vec<(&RunningSnapshot, &RunningOperator)> = queries
        .iter()
        .flat_map(|query| query.operators.iter().map(move |op| (query, op)))
        .collect();
    let columns = vec![
        strings(&rows, |(query, _)| query.trace_id.as_str()),
        strings(&rows, |(query, _)| query.run_id.as_str()),
        ints(&rows, |(_, op)| Some(op.id)),
        ints(&rows, |(_, op)| op.parent),
        strings(&rows, |(_, op)| op.name.as_str()),
        ints(&rows, |(_, op)| Some(op.rows)),
        ints(&rows, |(_, op)| Some(op.batches)),
        ints(&rows, |(_, op)| Some(op.partitions_started)),
        ints(&rows, |(_, op)| Some(op.partitions_done)),
        ints(&rows, |(_, op)| Some(op.partitions)),
    ];
    Ok(RecordBatch::try_new(
        Arc::clone(&RUNNING_OPERATORS_SCHEMA),
        columns,
    )?)
}

/// `dftrace.running`: one row per query in flight in the session.
pub(crate) fn running_table(running: Arc<RunningQueries>) -> SnapshotTable {
    SnapshotTable::new(Arc::clone(&RUNNING_SCHEMA), TableType::View, move || {
        running_batch(&running.snapshots())
    })
}

/// `dftrace.running_operators`: one row per operator, so far, of each query
/// in flight.
pub(crate) fn running_operators_table(running: Arc<RunningQueries>) -> SnapshotTable {
    SnapshotTable::new(
        Arc::clone(&RUNNING_OPERATORS_SCHEMA),
        TableType::View,
        move || running_operators_batch(&running.snapshots()),
    )
}
