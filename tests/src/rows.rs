//! Query results compared as data: the rows as sorted strings.

use datafusion::arrow::array::{Array, Float32Array, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
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

/// Registers `u(id BIGINT NOT NULL, w VARCHAR NOT NULL)` in `ctx`, one
/// partition: the join partner of the tests' `t` tables.
///
/// # Errors
///
/// When `ids` and `words` differ in length, or the name is taken.
pub fn register_join_partner(
    ctx: &datafusion::prelude::SessionContext,
    ids: impl IntoIterator<Item = i64>,
    words: impl IntoIterator<Item = String>,
) -> datafusion::error::Result<()> {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("w", DataType::Utf8, false),
    ]));
    let u = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from_iter_values(words)),
        ],
    )?;
    ctx.register_table("u", Arc::new(MemTable::try_new(schema, vec![vec![u]])?))?;
    Ok(())
}
