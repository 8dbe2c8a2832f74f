//! TPC-H data generated in-process with `tpchgen-arrow`, as parquet.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use tpchgen::generators::{CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator};
use tpchgen_arrow::{CustomerArrow, LineItemArrow, NationArrow, OrderArrow};

/// The TPC-H tables this helper generates.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    /// `nation` (25 rows at any scale).
    Nation,
    /// `orders`.
    Orders,
    /// `lineitem`.
    Lineitem,
    /// `customer`.
    Customer,
}

impl Table {
    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Nation => "nation",
            Table::Orders => "orders",
            Table::Lineitem => "lineitem",
            Table::Customer => "customer",
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
            Table::Customer => CustomerArrow::new(CustomerGenerator::new(scale, 1, 1)).collect(),
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

/// Writes `tables` at `scale` as `<dir>/<table>/part-0.parquet` and returns
/// the `CREATE EXTERNAL TABLE` statements that register them.
///
/// # Panics
///
/// On I/O errors.
pub fn write_tables(dir: &std::path::Path, scale: f64, tables: &[Table]) -> Vec<String> {
    tables
        .iter()
        .map(|table| {
            let folder = dir.join(table.name());
            std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(folder.join("part-0.parquet"), table.parquet(scale))
                .unwrap_or_else(|e| panic!("{e}"));
            format!(
                "CREATE EXTERNAL TABLE {} STORED AS PARQUET LOCATION '{}/'",
                table.name(),
                folder.display()
            )
        })
        .collect()
}

/// TPC-H Q1 (pricing summary report).
pub const Q1: &str = "select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty, sum(l_extendedprice) as sum_base_price, sum(l_extendedprice * (1 - l_discount)) as sum_disc_price, sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge, avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc, count(*) as count_order from lineitem where l_shipdate <= date '1998-12-01' - interval '90' day group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus";

/// TPC-H Q3 (shipping priority).
pub const Q3: &str = "select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate, o_shippriority from customer, orders, lineitem where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15' group by l_orderkey, o_orderdate, o_shippriority order by revenue desc, o_orderdate limit 10";

/// TPC-H Q6 (forecasting revenue change).
pub const Q6: &str = "select sum(l_extendedprice * l_discount) as revenue from lineitem where l_shipdate >= date '1994-01-01' and l_shipdate < date '1994-01-01' + interval '1' year and l_discount between 0.06 - 0.01 and 0.06 + 0.01 and l_quantity < 24";
