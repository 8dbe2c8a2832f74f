//! Tables in, results out: the tests' in-memory tables built from columns,
//! and query results compared as data (the rows as sorted strings, a
//! column, a metric of an EXPLAIN ANALYZE line).

use datafusion::arrow::array::{
    Array, ArrayRef, Float32Array, Float64Array, Int64Array, StringArray,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// The rows of `batches` as sorted strings: equal for equal results whatever
/// the order of ties, with floats to 9 significant digits (partial sums can
/// differ in the last bits between runs).
pub fn canonical_rows(batches: &[RecordBatch]) -> Result<Vec<String>, String> {
    let mut rows = Vec::new();
    let options = FormatOptions::default().with_null("NULL");
    for batch in batches {
        let columns: Vec<Box<dyn Fn(usize) -> String>> = batch
            .columns()
            .iter()
            .map(|column| -> Result<Box<dyn Fn(usize) -> String>, String> {
                let column = Arc::clone(column);
                let float = |value: f64| format!("{value:.8e}");
                Ok(match column.data_type() {
                    DataType::Float64 => Box::new(move |row| {
                        let array = column.as_any().downcast_ref::<Float64Array>();
                        match array {
                            Some(a) if a.is_valid(row) => float(a.value(row)),
                            _ => "NULL".to_owned(),
                        }
                    }),
                    DataType::Float32 => Box::new(move |row| {
                        let array = column.as_any().downcast_ref::<Float32Array>();
                        match array {
                            Some(a) if a.is_valid(row) => float(f64::from(a.value(row))),
                            _ => "NULL".to_owned(),
                        }
                    }),
                    _ => {
                        let text: Vec<String> = {
                            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
                                .map_err(|e| e.to_string())?;
                            (0..column.len())
                                .map(|row| formatter.value(row).to_string())
                                .collect()
                        };
                        Box::new(move |row| text[row].clone())
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|column| column(row))
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    rows.sort();
    Ok(rows)
}

/// The column `name` of `batches`, an `Int64` column, as optional integers
/// in row order.
///
/// # Panics
///
/// When there is no such column or it is not `Int64`.
pub fn int_column(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    batches
        .iter()
        .flat_map(|batch| {
            let array = batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no column `{name}`"))
                .as_primitive::<Int64Type>();
            (0..array.len())
                .map(|i| array.is_valid(i).then(|| array.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The column `name` of `batches` as text in row order (any type, cast).
///
/// # Panics
///
/// When there is no such column or it cannot be cast to text.
pub fn string_column(batches: &[RecordBatch], name: &str) -> Vec<String> {
    use datafusion::arrow::array::AsArray;
    let mut out = Vec::new();
    for batch in batches {
        let column = batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column `{name}`"));
        let text = datafusion::arrow::compute::cast(column, &DataType::Utf8)
            .unwrap_or_else(|e| panic!("`{name}` as text: {e}"));
        let text = text.as_string::<i32>();
        out.extend((0..text.len()).map(|i| text.value(i).to_owned()));
    }
    out
}

/// An `Int64` column of `values`.
pub fn ints(values: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

/// A `Float64` column of `values`.
pub fn floats(values: impl IntoIterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

/// A `Utf8` column of `values`.
pub fn texts<T: AsRef<str>>(values: impl IntoIterator<Item = T>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// A batch of named `columns`, each `NOT NULL` unless it holds a null.
///
/// # Errors
///
/// When the columns differ in length.
pub fn batch_of<'a>(
    columns: impl IntoIterator<Item = (&'a str, ArrayRef)>,
) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_from_iter_with_nullable(columns.into_iter().map(|(name, column)| {
        let nullable = column.null_count() > 0;
        (name, column, nullable)
    }))
}

/// Registers table `name` in `ctx`: one partition per batch of
/// `partitions`, which share the first one's schema.
///
/// # Errors
///
/// When there is no batch, the batches' schemas differ, or the name is
/// taken.
pub fn register_batches(
    ctx: &SessionContext,
    name: &str,
    partitions: Vec<RecordBatch>,
) -> datafusion::error::Result<()> {
    let Some(schema) = partitions.first().map(RecordBatch::schema) else {
        return datafusion::common::plan_err!("table `{name}` needs a batch for its schema");
    };
    let partitions = partitions.into_iter().map(|batch| vec![batch]).collect();
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, partitions)?))?;
    Ok(())
}

/// Registers `u(id BIGINT NOT NULL, w VARCHAR NOT NULL)` in `ctx`, one
/// partition: the join partner of the tests' `t` tables.
///
/// # Errors
///
/// When `ids` and `words` differ in length, or the name is taken.
pub fn register_join_partner(
    ctx: &SessionContext,
    ids: impl IntoIterator<Item = i64>,
    words: impl IntoIterator<Item = String>,
) -> datafusion::error::Result<()> {
    let u = batch_of([("id", ints(ids)), ("w", texts(words))])?;
    register_batches(ctx, "u", vec![u])
}

/// The value of `name=` in one EXPLAIN ANALYZE line's metrics.
pub fn explain_metric<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let metrics = line.split_once(", metrics=[")?.1;
    let start = metrics.find(&format!("{name}="))? + name.len() + 1;
    let rest = &metrics[start..];
    let end = rest.find([',', ']']).unwrap_or(rest.len());
    Some(&rest[..end])
}
