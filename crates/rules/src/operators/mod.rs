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
//! A plan is handed to its query's root span (kept in the span's registry
//! extensions) when the rule wraps it. A plan the planner instrumentation
//! opened a root for carries that root at its top
//! ([`wrapper::Role::QueryRoot`]); one wrapped outside any root (a host
//! that uses the exec rule without the planner instrumentation) opens its
//! root at its first `execute`.

mod lineage;
mod record;
mod root;
pub(crate) mod spans;
mod wrapper;

pub(crate) use record::{
    Collector, DeferredOptions, Executed, LiveFields, inside_query, now_unix_ns, span_tracer,
    tracer_of, unix_ns_time,
};

use crate::query::trace_known_unsampled;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use dftrace_registry::INSTRUMENT_RULE_NAME;
use dftrace_registry::literals::QueryLiterals;
use record::NodeRecord;
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
        let inside = inside_query();
        if !inside && plan.downcast_ref::<EmptyExec>().is_some() {
            // What a host that collects the empty result of a statement
            // `ctx.sql` already ran (DDL, `CREATE TABLE .. AS`) gets: it
            // runs nothing, and gets no trace.
            return Ok(plan);
        }
        if inside {
            let literals = crate::literals::current();
            crate::literals::add_physical(&literals, &plan);
            return wrap_operators(
                plan,
                self.preview_limit,
                Some(&self.options),
                None,
                &literals,
            );
        }
        // No root encloses the planning. The planner instrumentation's root
        // (should a host have replaced dftrace's query planner) is taken
        // over; else the plan opens one when it runs.
        if let Some(planned) = crate::planner::take_planned_root()
            && let Some(query) = planned.root
        {
            let literals = Arc::clone(query.literals());
            crate::literals::add_physical(&literals, &plan);
            let wrapped = wrap_operators(
                plan,
                self.preview_limit,
                Some(&self.options),
                None,
                &literals,
            )?;
            return Ok(with_query_root(wrapped, query));
        }
        let literals = Arc::new(QueryLiterals::new(self.options.record_literals));
        crate::literals::add_physical(&literals, &plan);
        let wrapped = wrap_operators(
            plan,
            self.preview_limit,
            Some(&self.options),
            None,
            &literals,
        )?;
        Ok(Arc::new(DftraceExec::new(
            wrapped,
            Role::QueryRoot(Arc::new(RootState::lazy(literals))),
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
