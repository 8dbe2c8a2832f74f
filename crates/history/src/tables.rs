//! `dftrace.queries` and `dftrace.operators`: the kept queries as tables,
//! built from a snapshot of the history at each scan.

use crate::kept::{KeptQuery, QueryHistory};
use crate::snapshot::SnapshotTable;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Int64Builder, MapBuilder, StringBuilder,
    TimestampNanosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use dftrace_registry::saturating_i64;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// The schema metadata key that marks the history's tables, so that a
/// query reading them is not kept itself.
pub(crate) const HISTORY_MARKER: &str = "dftrace.history";

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The type of a `map<string, int64>` column, as `MapBuilder` makes it.
pub(crate) fn int_map_type() -> DataType {
    MapBuilder::new(None, StringBuilder::new(), Int64Builder::new())
        .finish()
        .data_type()
        .clone()
}

fn marked(table: &str, fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        fields,
        HashMap::from([(HISTORY_MARKER.to_owned(), table.to_owned())]),
    ))
}

static QUERIES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    marked(
        crate::QUERIES_TABLE,
        vec![
            Field::new("trace_id", DataType::Utf8, false),
            Field::new("run_id", DataType::Utf8, false),
            Field::new("fingerprint", DataType::Utf8, true),
            Field::new("sql", DataType::Utf8, true),
            Field::new("start", timestamp(), false),
            Field::new("duration_ns", DataType::Int64, false),
            Field::new("outcome", DataType::Utf8, false),
            Field::new("error_kind", DataType::Utf8, true),
            Field::new("output_rows", DataType::Int64, true),
            Field::new("bytes_scanned", DataType::Int64, true),
            Field::new("spilled_bytes", DataType::Int64, true),
            Field::new("peak_memory_bytes", DataType::Int64, true),
            Field::new("failed_reservations", DataType::Int64, true),
            Field::new("storage_requests", DataType::Int64, true),
            Field::new("storage_bytes_read", DataType::Int64, true),
            Field::new("storage_bytes_written", DataType::Int64, true),
            Field::new("operator_count", DataType::Int64, false),
            Field::new("slowest_operator", DataType::Utf8, true),
            Field::new("slowest_self_time_ns", DataType::Int64, true),
        ],
    )
});

static OPERATORS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    marked(
        crate::OPERATORS_TABLE,
        vec![
            Field::new("trace_id", DataType::Utf8, false),
            Field::new("run_id", DataType::Utf8, false),
            Field::new("operator_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, false),
            Field::new("description", DataType::Utf8, false),
            Field::new("self_time_ns", DataType::Int64, true),
            Field::new("start", timestamp(), false),
            Field::new("end", timestamp(), false),
            Field::new("wall_ns", DataType::Int64, false),
            Field::new("output_rows", DataType::Int64, true),
            Field::new("estimated_rows", DataType::Int64, true),
            Field::new("partitions", DataType::Int64, false),
            Field::new("rows_min", DataType::Int64, true),
            Field::new("rows_median", DataType::Int64, true),
            Field::new("rows_max", DataType::Int64, true),
            Field::new("self_time_min_ns", DataType::Int64, true),
            Field::new("self_time_median_ns", DataType::Int64, true),
            Field::new("self_time_max_ns", DataType::Int64, true),
            Field::new("spilled_bytes", DataType::Int64, true),
            Field::new("peak_memory_bytes", DataType::Int64, true),
            Field::new("failed", DataType::Boolean, false),
            Field::new("metrics", int_map_type(), false),
        ],
    )
});

fn queries_batch(queries: &[Arc<KeptQuery>]) -> Result<RecordBatch> {
    let mut trace_id = StringBuilder::new();
    let mut run_id = StringBuilder::new();
    let mut fingerprint = StringBuilder::new();
    let mut sql = StringBuilder::new();
    let mut start = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut duration = Int64Builder::new();
    let mut outcome = StringBuilder::new();
    let mut error_kind = StringBuilder::new();
    let mut rows = Int64Builder::new();
    let mut scanned = Int64Builder::new();
    let mut spilled = Int64Builder::new();
    let mut peak_memory = Int64Builder::new();
    let mut failed_reservations = Int64Builder::new();
    let mut requests = Int64Builder::new();
    let mut read = Int64Builder::new();
    let mut written = Int64Builder::new();
    let mut operator_count = Int64Builder::new();
    let mut slowest = StringBuilder::new();
    let mut slowest_time = Int64Builder::new();
    for query in queries {
        trace_id.append_value(&query.trace_id);
        run_id.append_value(&query.run_id);
        fingerprint.append_option(query.fingerprint.as_deref());
        sql.append_option(query.sql.as_deref());
        start.append_value(query.start_unix_ns);
        duration.append_value(query.duration_ns);
        outcome.append_value(if query.error_kind.is_some() {
            "error"
        } else if query.cancelled {
            "cancelled"
        } else {
            "ok"
        });
        error_kind.append_option(query.error_kind.as_deref());
        rows.append_option(query.output_rows);
        scanned.append_option(query.bytes_scanned);
        spilled.append_option(query.spilled_bytes);
        peak_memory.append_option(query.peak_memory_bytes);
        failed_reservations.append_option(query.failed_reservations);
        requests.append_option(query.storage_requests);
        read.append_option(query.storage_bytes_read);
        written.append_option(query.storage_bytes_written);
        operator_count.append_value(query.operators.len() as i64);
        let top = query.slowest_operator();
        slowest.append_option(top.map(|op| op.name.as_str()));
        slowest_time.append_option(top.and_then(|op| op.self_time_ns).map(saturating_i64));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(run_id.finish()),
        Arc::new(fingerprint.finish()),
        Arc::new(sql.finish()),
        Arc::new(start.finish()),
        Arc::new(duration.finish()),
        Arc::new(outcome.finish()),
        Arc::new(error_kind.finish()),
        Arc::new(rows.finish()),
        Arc::new(scanned.finish()),
        Arc::new(spilled.finish()),
        Arc::new(peak_memory.finish()),
        Arc::new(failed_reservations.finish()),
        Arc::new(requests.finish()),
        Arc::new(read.finish()),
        Arc::new(written.finish()),
        Arc::new(operator_count.finish()),
        Arc::new(slowest.finish()),
        Arc::new(slowest_time.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::clone(&QUERIES_SCHEMA), columns)?)
}

fn operators_batch(queries: &[Arc<KeptQuery>]) -> Result<RecordBatch> {
    let mut trace_id = StringBuilder::new();
    let mut run_id = StringBuilder::new();
    let mut id = Int64Builder::new();
    let mut parent = Int64Builder::new();
    let mut name = StringBuilder::new();
    let mut description = StringBuilder::new();
    let mut self_time = Int64Builder::new();
    let mut start = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut end = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut wall = Int64Builder::new();
    let mut rows = Int64Builder::new();
    let mut estimated = Int64Builder::new();
    let mut partitions = Int64Builder::new();
    let mut spread: [Int64Builder; 6] = std::array::from_fn(|_| Int64Builder::new());
    let mut spilled = Int64Builder::new();
    let mut peak_memory = Int64Builder::new();
    let mut failed = BooleanBuilder::new();
    let mut metrics = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    for query in queries {
        for op in &query.operators {
            trace_id.append_value(&query.trace_id);
            run_id.append_value(&query.run_id);
            id.append_value(saturating_i64(op.id));
            parent.append_option(op.parent.map(saturating_i64));
            name.append_value(&op.name);
            description.append_value(&op.description);
            self_time.append_option(op.self_time_ns.map(saturating_i64));
            start.append_value(saturating_i64(op.start_unix_ns));
            end.append_value(saturating_i64(op.end_unix_ns));
            wall.append_value(saturating_i64(
                op.end_unix_ns.saturating_sub(op.start_unix_ns),
            ));
            rows.append_option(op.output_rows.map(saturating_i64));
            estimated.append_option(op.estimated_rows.map(saturating_i64));
            partitions.append_value(saturating_i64(op.partitions));
            let [
                rows_min,
                rows_median,
                rows_max,
                time_min,
                time_median,
                time_max,
            ] = &mut spread;
            rows_min.append_option(op.rows_spread.map(|s| saturating_i64(s.min)));
            rows_median.append_option(op.rows_spread.map(|s| saturating_i64(s.median)));
            rows_max.append_option(op.rows_spread.map(|s| saturating_i64(s.max)));
            time_min.append_option(op.self_time_spread.map(|s| saturating_i64(s.min)));
            time_median.append_option(op.self_time_spread.map(|s| saturating_i64(s.median)));
            time_max.append_option(op.self_time_spread.map(|s| saturating_i64(s.max)));
            spilled.append_option(op.spilled_bytes.map(saturating_i64));
            peak_memory.append_option(op.peak_memory_bytes.map(saturating_i64));
            failed.append_value(op.failed);
            for (metric, value) in &op.metrics {
                metrics.keys().append_value(metric);
                metrics.values().append_value(*value);
            }
            metrics.append(true)?;
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(run_id.finish()),
        Arc::new(id.finish()),
        Arc::new(parent.finish()),
        Arc::new(name.finish()),
        Arc::new(description.finish()),
        Arc::new(self_time.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(wall.finish()),
        Arc::new(rows.finish()),
        Arc::new(estimated.finish()),
        Arc::new(partitions.finish()),
    ];
    columns.extend(
        spread
            .iter_mut()
            .map(|builder| Arc::new(builder.finish()) as ArrayRef),
    );
    columns.push(Arc::new(spilled.finish()));
    columns.push(Arc::new(peak_memory.finish()));
    columns.push(Arc::new(failed.finish()));
    columns.push(Arc::new(metrics.finish()));
    Ok(RecordBatch::try_new(
        Arc::clone(&OPERATORS_SCHEMA),
        columns,
    )?)
}

/// `dftrace.queries`: one row per kept query.
pub(crate) fn queries_table(history: Arc<QueryHistory>) -> SnapshotTable {
    SnapshotTable::new(Arc::clone(&QUERIES_SCHEMA), TableType::Base, move || {
        queries_batch(&history.queries())
    })
}

/// `dftrace.operators`: one row per operator of a kept query.
pub(crate) fn operators_table(history: Arc<QueryHistory>) -> SnapshotTable {
    SnapshotTable::new(Arc::clone(&OPERATORS_SCHEMA), TableType::Base, move || {
        operators_batch(&history.queries())
    })
}
