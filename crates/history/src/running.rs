//! `dftrace.running` and `dftrace.running_operators`: the session's queries
//! in flight and their operators, read from the queries themselves at each
//! scan (a query that ends leaves them once it is in `dftrace.queries`).

use crate::snapshot::SnapshotTable;
use datafusion::arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampNanosecondBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use dftrace_registry::saturating_i64;
use dftrace_registry::{RunningQueries, RunningSnapshot};
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
    let mut trace_id = StringBuilder::new();
    let mut run_id = StringBuilder::new();
    let mut fingerprint = StringBuilder::new();
    let mut start = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut elapsed = Int64Builder::new();
    let mut phase = StringBuilder::new();
    let mut rows = Int64Builder::new();
    let mut peak = Int64Builder::new();
    let mut operators = Int64Builder::new();
    for query in queries {
        trace_id.append_value(&query.trace_id);
        run_id.append_value(&query.run_id);
        fingerprint.append_option(query.fingerprint.as_deref());
        start.append_value(unix_ns(query.started));
        let took = now.duration_since(query.started).unwrap_or_default();
        elapsed.append_value(saturating_i64(took.as_nanos()));
        phase.append_value(query.phase.as_str());
        rows.append_value(saturating_i64(query.output_rows));
        peak.append_option(query.peak_memory_bytes.map(saturating_i64));
        operators.append_value(query.operators.len() as i64);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(run_id.finish()),
        Arc::new(fingerprint.finish()),
        Arc::new(start.finish()),
        Arc::new(elapsed.finish()),
        Arc::new(phase.finish()),
        Arc::new(rows.finish()),
        Arc::new(peak.finish()),
        Arc::new(operators.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::clone(&RUNNING_SCHEMA), columns)?)
}

fn running_operators_batch(queries: &[RunningSnapshot]) -> Result<RecordBatch> {
    let mut trace_id = StringBuilder::new();
    let mut run_id = StringBuilder::new();
    let mut id = Int64Builder::new();
    let mut parent = Int64Builder::new();
    let mut name = StringBuilder::new();
    let mut rows = Int64Builder::new();
    let mut batches = Int64Builder::new();
    let mut started = Int64Builder::new();
    let mut done = Int64Builder::new();
    let mut partitions = Int64Builder::new();
    for query in queries {
        for op in &query.operators {
            trace_id.append_value(&query.trace_id);
            run_id.append_value(&query.run_id);
            id.append_value(saturating_i64(op.id));
            parent.append_option(op.parent.map(saturating_i64));
            name.append_value(&op.name);
            rows.append_value(saturating_i64(op.rows));
            batches.append_value(saturating_i64(op.batches));
            started.append_value(saturating_i64(op.partitions_started));
            done.append_value(saturating_i64(op.partitions_done));
            partitions.append_value(saturating_i64(op.partitions));
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(run_id.finish()),
        Arc::new(id.finish()),
        Arc::new(parent.finish()),
        Arc::new(name.finish()),
        Arc::new(rows.finish()),
        Arc::new(batches.finish()),
        Arc::new(started.finish()),
        Arc::new(done.finish()),
        Arc::new(partitions.finish()),
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
