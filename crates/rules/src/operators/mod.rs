//! Operator spans built from the executed plan (`rules.operator_spans =
//! "deferred"`, the default).
//!
//! While a query runs, each operator is wrapped in a thin node whose streams
//! note when they started and ended (and, with previews on, copy the first
//! rows); nothing is paid per poll but a branch. When the query's root span
//! records its outcome, [`spans::build_operator_spans`] walks the executed
//! plan and creates one OpenTelemetry span per operator with explicit start
//! and end times and typed metrics, under the root. InfluxDB IOx builds its
//! operator spans the same way (`iox_query`, `query_tracing.rs`).
//!
//! Each operator's description (`datafusion.node`) is taken when the rule
//! wraps the plan, before it runs: after a run, DataFusion's dynamic
//! filters (hash join bounds and sets, TopK thresholds) show values of the
//! data in the descriptions. It is masked with the query's literal values
//! then and there.
//!
//! With `rules.operator_spans = "metrics-only"` only the plan's top is
//! wrapped ([`wrap_top_only`]): the nodes below get records (their
//! descriptions, taken before the run) that the top hands to the query
//! with its own, and their spans take their intervals from the start and
//! end timestamps of their metrics, within their parents'.
//!
//! A plan is handed to its query's root span (kept in the span's registry
//! extensions) when the rule wraps it. A plan the planner instrumentation
//! opened a root for carries that root at its top
//! ([`wrapper::Role::QueryRoot`]); one wrapped outside any root (a host
//! that uses the exec rule without the planner instrumentation) opens its
//! root at its first `execute`.

mod lineage;
mod metric_attributes;
mod record;
mod spans;
mod wrapper;

pub(crate) use record::{Collector, DeferredOptions, Executed, LiveFields};
pub(crate) use spans::{BuiltOperators, Outcome, build_operator_spans, running_operators};
pub(crate) use wrapper::{DftraceExec, PlanRoot, Role};

use datafusion::error::Result;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use dftrace_registry::literals::QueryLiterals;
use record::NodeRecord;
use std::sync::Arc;

/// `node` and everything under it wrapped, each node with a record keeping
/// `preview_limit` rows, for a span built at query end (`deferred`, with
/// the node's description masked with `literals`) or additions to a live
/// span (`live`). The wrapped children keep the node's properties (a
/// wrapper reports its node's), so each node is rebuilt without
/// recomputing them.
pub(crate) fn wrap_operators(
    node: Arc<dyn ExecutionPlan>,
    preview_limit: usize,
    deferred: Option<&Arc<DeferredOptions>>,
    live: Option<&Arc<LiveFields>>,
    literals: &QueryLiterals,
) -> Result<Arc<dyn ExecutionPlan>> {
    if DftraceExec::of(node.as_ref()).is_some() {
        return Ok(node);
    }
    let children: Vec<Arc<dyn ExecutionPlan>> = node.children().into_iter().cloned().collect();
    let node = if children.is_empty() {
        node
    } else {
        let wrapped = children
            .into_iter()
            .map(|child| wrap_operators(child, preview_limit, deferred, live, literals))
            .collect::<Result<Vec<_>>>()?;
        node.replace_children(
            wrapped,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
        )?
    };
    let record = Arc::new(NodeRecord::new(
        preview_limit,
        deferred.cloned(),
        live.cloned(),
    ));
    if deferred.is_some() {
        record.describe(node.as_ref(), literals);
    }
    Ok(Arc::new(DftraceExec::new(node, Role::Operator(record))))
}

/// `node` with only its top wrapped (`metrics-only`): every node under it
/// gets a record holding its description (masked with `literals`, taken
/// now, before it runs), handed to the query's collector when the top
/// first executes, and its span is built at query end from its metrics.
/// Nothing sits between the operators, and no node is rebuilt.
pub(crate) fn wrap_top_only(
    node: Arc<dyn ExecutionPlan>,
    preview_limit: usize,
    deferred: &Arc<DeferredOptions>,
    literals: &QueryLiterals,
) -> Arc<dyn ExecutionPlan> {
    if DftraceExec::of(node.as_ref()).is_some() {
        return node;
    }
    let record = NodeRecord::top_only(preview_limit, Arc::clone(deferred));
    record.describe(node.as_ref(), literals);
    record.note_unwrapped_descendants(|deferred| {
        wrapper::unwrapped_descendants(&node, deferred, literals)
    });
    Arc::new(DftraceExec::new(node, Role::Operator(Arc::new(record))))
}
