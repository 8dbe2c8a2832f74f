//! TPC-H data generated in-process with `tpchgen-arrow`, as parquet.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use tpchgen::generators::{LineItemGenerator, NationGenerator, OrderGenerator};
use tpchgen_arrow::{LineItemArrow, NationArrow, OrderArrow};

/// The TPC-H tables this helper generates.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    /// `nation` (25 rows at any scale).
    Nation,
    /// `orders`.
    Orders,
    /// `lineitem`.
    Lineitem,
}

impl Table {
    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Nation => "nation",
            Table::Orders => "orders",
            Table::Lineitem => "lineitem",
        }
    }

    /// The table's batches at `scale` (e.g. 0.01).
    ///
    /// # Panics
    ///
    /// If the generator fails.
    pub fn batches(self, scale: f64) -> Vec<RecordBatch> {
        let batches: Result<Vec<RecordBatch>, _> = match self {
            Table::Nation => NationArrow::new(NationGenerator::new(scale, 1, 1)).collect(),
            Table::Orders => OrderArrow::new(OrderGenerator::new(scale, 1, 1)).collect(),
            Table::Lineitem => LineItemArrow::new(LineItemGenerator::new(scale, 1, 1)).collect(),
        };
        batches.unwrap_or_else(|e| panic!("tpchgen {}: {e}", self.name()))
    }

    /// The table at `scale` as one parquet file's bytes.
    ///
    /// # Panics
    ///
    /// If the parquet writer fails (it writes to memory).
    pub fn parquet(self, scale: f64) -> Vec<u8> {
        let batches = self.batches(scale);
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batches[0].schema(), None)
            .unwrap_or_else(|e| panic!("parquet writer: {e}"));
        for batch in &batches {
            writer
                .write(batch)
                .unwrap_or_else(|e| panic!("parquet write: {e}"));
        }
        writer
            .close()
            .unwrap_or_else(|e| panic!("parquet close: {e}"));
        bytes
    }
}
