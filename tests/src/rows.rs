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
