//! The per-query summary, computed from an executed physical plan.

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::{MetricValue, MetricsSet};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The version of the [`QueryMetricsSummary`] layout; bumped on any change
/// to its fields.
pub const SCHEMA_VERSION: u32 = 2;

/// One operator of the executed plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSummary {
    /// The operator's name, e.g. `HashJoinExec`.
    pub name: String,
    /// Depth in the plan (the root is 0).
    pub depth: usize,
    /// Output partitions.
    pub partitions: usize,
    /// Rows produced, when the operator reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_rows: Option<u64>,
    /// CPU time spent in the operator, in nanoseconds, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_compute_ns: Option<u64>,
}

/// One function's figures in the query (from `dftrace-udf`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSummary {
    /// The function's name.
    pub name: String,
    /// `scalar`, `aggregate` or `window`.
    pub kind: String,
    /// Calls into the function (a scalar function's batches, an
    /// aggregate's accumulator calls, a window function's evaluations).
    pub calls: u64,
    /// Input rows.
    pub rows: u64,
    /// Time inside the function, nanoseconds.
    pub time_ns: u64,
    /// Calls that failed.
    pub errors: u64,
}

/// One cache's lookups in the query (from `dftrace-caches`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSummary {
    /// The cache: `file_metadata`, `file_statistics` or `list_files`.
    pub cache: String,
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
}

/// A stable summary of one query's DataFusion metrics. A figure no operator
/// reported is absent (`None`), never a guessed zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryMetricsSummary {
    /// [`SCHEMA_VERSION`] of this layout.
    pub schema_version: u32,
    /// Rows the query returned (the root operator's output rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_rows: Option<u64>,
    /// Batches the root operator produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_batches: Option<u64>,
    /// Bytes (in memory) of the root operator's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// CPU time of all operators, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_compute_ns: Option<u64>,
    /// Spill files written, over all operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spill_count: Option<u64>,
    /// Bytes spilled to disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spilled_bytes: Option<u64>,
    /// Rows spilled to disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spilled_rows: Option<u64>,
    /// Rows out of all filters over rows into them (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_selectivity: Option<f64>,
    /// Bytes scanned by file sources (`bytes_scanned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_scanned: Option<u64>,
    /// Files opened by file sources (`files_opened`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_opened: Option<u64>,
    /// Operators in the plan.
    pub operator_count: usize,
    /// Bytes read from object stores during the query (needs
    /// `dftrace-object-store-registry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes_read: Option<u64>,
    /// Bytes written to object stores during the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes_written: Option<u64>,
    /// Every operator, in pre-order (parents before children).
    pub operators: Vec<OperatorSummary>,
    /// The observed functions that ran, by name (needs `dftrace-udf` and
    /// this crate's `functions` feature); empty when none ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<FunctionSummary>,
    /// The caches the query looked up, by name (needs `dftrace-caches` and
    /// this crate's `caches` feature); empty when none was used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<CacheSummary>,
}

fn value(value: Option<MetricValue>) -> Option<u64> {
    value.map(|v| v.as_usize() as u64)
}

fn sum_kind(metrics: &MetricsSet, kind: fn(&MetricValue) -> bool) -> Option<u64> {
    value(metrics.sum(|m| kind(m.value())))
}

fn add(total: &mut Option<u64>, part: Option<u64>) {
    if let Some(part) = part {
        *total = Some(total.unwrap_or(0) + part);
    }
}

/// Summarizes an executed plan (instrumentation wrappers are transparent:
/// they delegate names, children and metrics). Call it after the plan's
/// streams are done, so its metrics are final.
pub fn summarize(plan: &Arc<dyn ExecutionPlan>) -> QueryMetricsSummary {
    let mut summary = QueryMetricsSummary {
        schema_version: SCHEMA_VERSION,
        output_rows: None,
        output_batches: None,
        output_bytes: None,
        elapsed_compute_ns: None,
        spill_count: None,
        spilled_bytes: None,
        spilled_rows: None,
        filter_selectivity: None,
        bytes_scanned: None,
        files_opened: None,
        operator_count: 0,
        storage_bytes_read: None,
        storage_bytes_written: None,
        operators: Vec::new(),
        functions: Vec::new(),
        caches: Vec::new(),
    };
    let (mut filter_in, mut filter_out) = (0_u64, 0_u64);
    let mut stack: Vec<(Arc<dyn ExecutionPlan>, usize)> = vec![(Arc::clone(plan), 0)];
    while let Some((node, depth)) = stack.pop() {
        // The sums below add up every partition's metrics directly: no
        // `aggregate_by_name`, which allocates a new set per node.
        let metrics = dftrace_registry::node_metrics(node.as_ref());
        let rows = metrics
            .as_ref()
            .and_then(|m| m.output_rows())
            .map(|r| r as u64);
        let compute = metrics
            .as_ref()
            .and_then(|m| m.elapsed_compute().map(|ns| ns as u64));
        if let Some(metrics) = &metrics {
            if depth == 0 {
                summary.output_rows = rows;
                summary.output_batches =
                    sum_kind(metrics, |v| matches!(v, MetricValue::OutputBatches(_)));
                summary.output_bytes =
                    sum_kind(metrics, |v| matches!(v, MetricValue::OutputBytes(_)));
            }
            add(&mut summary.elapsed_compute_ns, compute);
            add(
                &mut summary.spill_count,
                metrics.spill_count().map(|v| v as u64),
            );
            add(
                &mut summary.spilled_bytes,
                metrics.spilled_bytes().map(|v| v as u64),
            );
            add(
                &mut summary.spilled_rows,
                metrics.spilled_rows().map(|v| v as u64),
            );
            add(
                &mut summary.bytes_scanned,
                value(metrics.sum_by_name("bytes_scanned")),
            );
            add(
                &mut summary.files_opened,
                value(metrics.sum_by_name("files_opened")),
            );
        }
        if node.name() == "FilterExec" {
            let input = node
                .children()
                .first()
                .and_then(|child| dftrace_registry::node_metrics(child.as_ref()))
                .and_then(|m| m.output_rows())
                .map(|r| r as u64);
            if let (Some(input), Some(output)) = (input, rows) {
                filter_in += input;
                filter_out += output;
            }
        }
        summary.operators.push(OperatorSummary {
            name: node.name().to_owned(),
            depth,
            partitions: node.properties().output_partitioning().partition_count(),
            output_rows: rows,
            elapsed_compute_ns: compute,
        });
        // Reverse so the first child is visited first (pre-order).
        for child in node.children().into_iter().rev() {
            stack.push((Arc::clone(child), depth + 1));
        }
    }
    summary.operator_count = summary.operators.len();
    if filter_in > 0 {
        summary.filter_selectivity = Some(filter_out as f64 / filter_in as f64);
    }
    summary
}
