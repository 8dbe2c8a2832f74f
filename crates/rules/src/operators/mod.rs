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
//! A plan is handed to its query's root span (kept in the span's registry
//! extensions) when the rule wraps it. A plan wrapped outside any root (a
//! host that ran `ctx.sql(..).collect()`) gets a root of its own at the top
//! ([`wrapper::Role::QueryRoot`]): opened by [`QueryRootPlanner`] when the
//! rules plugin is applied, so physical planning is under it too, or else
//! at the plan's first `execute`.

mod lineage;
mod record;
mod root;
pub(crate) mod spans;
mod wrapper;

pub(crate) use record::{Collector, DeferredOptions, LiveFields, span_tracer};
pub(crate) use root::{QueryRootPlanner, TracedTableFactory};

use crate::query::trace_known_unsampled;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use dftrace_registry::INSTRUMENT_RULE_NAME;
use record::{NodeRecord, inside_query};
use root::RootState;
use std::sync::Arc;
use tracing::Span;
use wrapper::{DftraceExec, Role};

/// The exec rule of the deferred mode: wraps every node, then hands the
/// plan to the enclosing root query span (or gives it a root of its own).
#[derive(Debug)]
pub(crate) struct DeferredRule {
    options: Arc<DeferredOptions>,
    preview_limit: usize,
}

impl DeferredRule {
    pub(crate) fn new(options: DeferredOptions, preview_limit: usize) -> Self {
        DeferredRule {
            options: Arc::new(options),
            preview_limit,
        }
    }
}

impl PhysicalOptimizerRule for DeferredRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // An unsampled trace exports nothing: the plan runs unwrapped.
        let current = Span::current();
        if trace_known_unsampled(&current) || DftraceExec::of(plan.as_ref()).is_some() {
            return Ok(plan);
        }
        if let Some(trace) = crate::literals::watched_trace(&current) {
            crate::literals::add_physical(trace, &plan);
        }
        let wrapped = wrap_operators(plan, self.preview_limit, Some(&self.options), None)?;
        if inside_query() {
            return Ok(wrapped);
        }
        // No root encloses the planning: the plan opens one when it runs.
        Ok(Arc::new(DftraceExec::new(
            wrapped,
            Role::QueryRoot(Arc::new(RootState::lazy())),
        )))
    }

    fn name(&self) -> &str {
        INSTRUMENT_RULE_NAME
    }

    fn schema_check(&self) -> bool {
        // Wrapping never changes a schema; upstream's rule skips the check too.
        false
    }
}

/// `node` and everything under it wrapped, each node with a record keeping
/// `preview_limit` rows, for a span built at query end (`deferred`) or
/// additions to a live span (`live`). The
/// wrapped children keep the node's properties (a wrapper reports its
/// node's), so each node is rebuilt without recomputing them.
pub(crate) fn wrap_operators(
    node: Arc<dyn ExecutionPlan>,
    preview_limit: usize,
    deferred: Option<&Arc<DeferredOptions>>,
    live: Option<&Arc<LiveFields>>,
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
            .map(|child| wrap_operators(child, preview_limit, deferred, live))
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
    Ok(Arc::new(DftraceExec::new(node, Role::Operator(record))))
}

/// Wraps `plan` in the query root `query` opened for it.
pub(crate) fn with_query_root(
    plan: Arc<dyn ExecutionPlan>,
    query: crate::QuerySpan,
) -> Arc<dyn ExecutionPlan> {
    Arc::new(DftraceExec::new(
        plan,
        Role::QueryRoot(Arc::new(RootState::started(query))),
    ))
}
