//! The history's tables over what it holds in memory: each scan takes a
//! fresh snapshot (the kept queries, the queries in flight) as one batch,
//! and DataFusion applies the filters and the limit.
//!
//! A snapshot's batch is built a column at a time ([`strings`], [`ints`],
//! [`timestamps`]), each column from one closure over the rows, so that a
//! table's columns are listed once, in the order of its schema.

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampNanosecondBuilder};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use dftrace_registry::saturating_i64;
use std::fmt;
use std::sync::Arc;

/// A `Utf8` column: `value` of each row (`None` for a null).
pub(crate) fn strings<'a, R, S: Into<Option<&'a str>>>(
    rows: &'a [R],
    value: impl Fn(&'a R) -> S,
) -> ArrayRef {
    let mut column = StringBuilder::new();
    column.extend(rows.iter().map(|row| value(row).into()));
    Arc::new(column.finish())
}

/// An `Int64` column: `value` of each row, saturating at `i64::MAX`
/// (`None` for a null).
pub(crate) fn ints<R, T: TryInto<i64>>(rows: &[R], value: impl Fn(&R) -> Option<T>) -> ArrayRef {
    let mut column = Int64Builder::with_capacity(rows.len());
    column.extend(rows.iter().map(|row| value(row).map(saturating_i64)));
    Arc::new(column.finish())
}

/// A `Timestamp(Nanosecond, "UTC")` column: `unix_ns` of each row,
/// saturating at `i64::MAX`.
pub(crate) fn timestamps<R, T: TryInto<i64>>(rows: &[R], unix_ns: impl Fn(&R) -> T) -> ArrayRef {
    let mut column = TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    column.extend(rows.iter().map(|row| Some(saturating_i64(unix_ns(row)))));
    Arc::new(column.finish())
}

/// What a scan reads: the table's rows now.
type Snapshot = Box<dyn Fn() -> Result<RecordBatch> + Send + Sync>;

/// A table whose rows are a snapshot taken at each scan.
pub(crate) struct SnapshotTable {
    schema: SchemaRef,
    table_type: TableType,
    snapshot: Snapshot,
}

impl SnapshotTable {
    pub(crate) fn new(
        schema: SchemaRef,
        table_type: TableType,
        snapshot: impl Fn() -> Result<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        SnapshotTable {
            schema,
            table_type,
            snapshot: Box::new(snapshot),
        }
    }
}

impl fmt::Debug for SnapshotTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotTable")
            .field("schema", &self.schema)
            .field("table_type", &self.table_type)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.table_type
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = (self.snapshot)()?;
        let schema = batch.schema();
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema,
            projection.cloned(),
        )?)
    }
}
