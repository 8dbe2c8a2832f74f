//! `dftrace.queries` and `dftrace.operators`: the kept queries as tables,
//! built from a snapshot of the history at each scan.

use crate::kept::{KeptQuery, QueryHistory};
use crate::snapshot::{SnapshotTable, ints, strings, timestamps};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Builder, MapBuilder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use dftrace_registry::OperatorFigures;
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
    let columns = vec![
        strings(queries, |query| query.trace_id.as_str()),
        strings(queries, |query| query.run_id.as_str()),
        strings(queries, |query| query.fingerprint.as_deref()),
        strings(queries, |query| query.sql.as_deref()),
        timestamps(queries, |query| query.start_unix_ns),
        ints(queries, |query| Some(query.duration_ns)),
        strings(queries, |query| {
            if query.error_kind.is_some() {
                "error"
            } else if query.cancelled {
                "cancelled"
            } else {
                "ok"
            }
        }),
        strings(queries, |query| query.error_kind.as_deref()),
        ints(queries, |query| query.output_rows),
        ints(queries, |query| query.bytes_scanned),
        ints(queries, |query| query.spilled_bytes),
        ints(queries, |query| query.peak_memory_bytes),
        ints(queries, |query| query.failed_reservations),
        ints(queries, |query| query.storage_requests),
        ints(queries, |query| query.storage_bytes_read),
        ints(queries, |query| query.storage_bytes_written),
        ints(queries, |query| Some(query.operators.len())),
        strings(queries, |query| {
            query.slowest_operator().map(|op| op.name.as_str())
        }),
        ints(queries, |query| {
            query.slowest_operator().and_then(|op| op.self_time_ns)
        }),
    ];
    Ok(RecordBatch::try_new(Arc::clone(&QUERIES_SCHEMA), columns)?)
}

fn operators_batch(queries: &[Arc<KeptQuery>]) -> Result<RecordBatch> {
    let rows: Vec<(&KeptQuery, &OperatorFigures)> = queries
        .iter()
        .flat_map(|query| query.operators.iter().map(move |op| (query.as_ref(), op)))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        strings(&rows, |(query, _)| query.trace_id.as_str()),
        strings(&rows, |(query, _)| query.run_id.as_str()),
        ints(&rows, |(_, op)| Some(op.id)),
        ints(&rows, |(_, op)| op.parent),
        strings(&rows, |(_, op)| op.name.as_str()),
        strings(&rows, |(_, op)| op.description.as_str()),
        ints(&rows, |(_, op)| op.self_time_ns),
        timestamps(&rows, |(_, op)| op.start_unix_ns),
        timestamps(&rows, |(_, op)| op.end_unix_ns),
        ints(&rows, |(_, op)| {
            Some(op.end_unix_ns.saturating_sub(op.start_unix_ns))
        }),
        ints(&rows, |(_, op)| op.output_rows),
        ints(&rows, |(_, op)| op.estimated_rows),
        ints(&rows, |(_, op)| Some(op.partitions)),
        ints(&rows, |(_, op)| op.rows_spread.map(|s| s.min)),
        ints(&rows, |(_, op)| op.rows_spread.map(|s| s.median)),
        ints(&rows, |(_, op)| op.rows_spread.map(|s| s.max)),
        ints(&rows, |(_, op)| op.self_time_spread.map(|s| s.min)),
        ints(&rows, |(_, op)| op.self_time_spread.map(|s| s.median)),
        ints(&rows, |(_, op)| op.self_time_spread.map(|s| s.max)),
        ints(&rows, |(_, op)| op.spilled_bytes),
        ints(&rows, |(_, op)| op.peak_memory_bytes),
        Arc::new(BooleanArray::from(
            rows.iter().map(|(_, op)| op.failed).collect::<Vec<_>>(),
        )),
        metric_maps(&rows)?,
    ];
    Ok(RecordBatch::try_new(
        Arc::clone(&OPERATORS_SCHEMA),
        columns,
    )?)
}

/// The `metrics` column: each operator's metrics by name.
fn metric_maps(rows: &[(&KeptQuery, &OperatorFigures)]) -> Result<ArrayRef> {
    let mut metrics = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    for (_, op) in rows {
        for (metric, value) in &op.metrics {
            metrics.keys().append_value(metric);
            metrics.values().append_value(*value);
        }
        metrics.append(true)?;
    }
    Ok(Arc::new(metrics.finish()))
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
