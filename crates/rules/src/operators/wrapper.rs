//! The thin node dftrace puts around each physical operator: it passes every
//! `ExecutionPlan` method through to the node it wraps (so plans, `EXPLAIN`,
//! downcasts and `datafusion-distributed` see the original node), and only
//! `execute` adds anything: a stream that notes when it started and ended.

use super::record::{DeferredOptions, Executed, NodeRecord};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Statistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{Distribution, OrderingRequirements, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{CardinalityEffect, InvariantLevel};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sort_pushdown::SortOrderPushdownResult;
use datafusion::physical_plan::{
    ChildStats, ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan,
    InputDistributionRequirements, PhysicalExpr, PlanProperties, ReplaceChildrenOptions,
    StatisticsArgs,
};
use dftrace_registry::literals::QueryLiterals;
use futures::{Stream, StreamExt};
use std::any::Any;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::{LookupSpan, Registry, SpanData as _};

/// Runs a plan's partitions inside the root query span opened for it. The
/// query layer implements it (`crate::root`), so this module needs to know
/// nothing about queries.
pub(crate) trait PlanRoot: fmt::Debug + Send + Sync {
    /// Partition `partition` of `inner` (the plan under the wrapper), in
    /// the root: its stream ends the root once every partition has ended.
    fn execute(
        self: Arc<Self>,
        inner: &Arc<dyn ExecutionPlan>,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream>;
}

/// What a wrapper does besides passing through.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// One operator: its streams note their start and end (and, with
    /// previews on, copy the first rows) into the record.
    Operator(Arc<NodeRecord>),
    /// The top of a plan whose query root dftrace opened itself (a host
    /// that ran `ctx.sql(..).collect()`): execution runs inside that root,
    /// which ends when every partition's stream has ended.
    QueryRoot(Arc<dyn PlanRoot>),
}

/// The wrapper node. Its type stays private: downcasts through
/// `downcast_delegate` reach the node it wraps.
pub(crate) struct DftraceExec {
    inner: Arc<dyn ExecutionPlan>,
    role: Role,
}

impl DftraceExec {
    pub(crate) fn new(inner: Arc<dyn ExecutionPlan>, role: Role) -> Self {
        DftraceExec { inner, role }
    }

    /// The wrapper of `plan`, when `plan` is one (a plain `Any` check:
    /// public downcasts go to the wrapped node).
    pub(crate) fn of(plan: &dyn ExecutionPlan) -> Option<&DftraceExec> {
        (plan as &dyn Any).downcast_ref::<DftraceExec>()
    }

    /// The operator record, for an operator wrapper.
    pub(crate) fn record(&self) -> Option<&Arc<NodeRecord>> {
        match &self.role {
            Role::Operator(record) => Some(record),
            Role::QueryRoot(_) => None,
        }
    }

    /// The node this wraps.
    pub(crate) fn inner(&self) -> &Arc<dyn ExecutionPlan> {
        &self.inner
    }

    /// The records of the wrapped children (through a live
    /// `InstrumentedExec` around them, whose downcasts reach this wrapper).
    pub(crate) fn child_records(inner: &Arc<dyn ExecutionPlan>) -> Vec<Arc<NodeRecord>> {
        inner
            .children()
            .into_iter()
            .filter_map(|child| {
                let child = child.as_ref();
                DftraceExec::of(child)
                    .or_else(|| child.downcast_delegate().and_then(DftraceExec::of))
                    .and_then(DftraceExec::record)
                    .cloned()
            })
            .collect()
    }

    /// An operator's partition, in a recording stream.
    fn execute_operator(
        &self,
        record: &Arc<NodeRecord>,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // What the node sets up here (memory reservations, say) is its own.
        let executed = {
            let _operator = dftrace_registry::enter_operator(record.key());
            self.inner.execute(partition, context)
        };
        match executed {
            Ok(stream) => Ok(Box::pin(OperatorStream::new(
                stream,
                Arc::clone(record),
                self.live_child_records(),
            ))),
            Err(error) => {
                record.note_error(&error);
                Err(error)
            }
        }
    }

    /// For live spans only: the children's records, to tell whether an
    /// error this node's stream sees started below it.
    fn live_child_records(&self) -> Vec<Arc<NodeRecord>> {
        match &self.role {
            Role::Operator(record) if record.live().is_some() => Self::child_records(&self.inner),
            _ => Vec::new(),
        }
    }

    /// The same role around a node that replaces the wrapped one: a new
    /// node is a new operator (a fresh record); a query root stays the same
    /// query.
    fn rewrap(&self, inner: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let role = match &self.role {
            Role::Operator(record) => Role::Operator(Arc::new(record.fresh_like())),
            Role::QueryRoot(state) => Role::QueryRoot(Arc::clone(state)),
        };
        Arc::new(DftraceExec { inner, role })
    }
}

impl fmt::Debug for DftraceExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Shows the stack of wrappers, as object_store's wrappers do.
        let role = match self.role {
            Role::Operator(_) => "operator",
            Role::QueryRoot(_) => "query root",
        };
        write!(f, "DftraceExec({role}, {:?})", self.inner)
    }
}

impl DisplayAs for DftraceExec {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_as(format, f)
    }
}

#[deny(clippy::missing_trait_methods)]
impl ExecutionPlan for DftraceExec {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn static_name() -> &'static str
    where
        Self: Sized,
    {
        "DftraceExec"
    }

    fn downcast_delegate(&self) -> Option<&dyn ExecutionPlan> {
        Some(self.inner.as_ref())
    }

    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn check_invariants(&self, check: InvariantLevel) -> Result<()> {
        self.inner.check_invariants(check)
    }

    fn dynamic_expressions_produced(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.inner.dynamic_expressions_produced()
    }

    #[expect(deprecated, reason = "passed through for hosts that still call it")]
    fn required_input_distribution(&self) -> Vec<Distribution> {
        self.inner.required_input_distribution()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.inner.input_distribution_requirements()
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.inner.required_input_ordering()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.inner.maintains_input_order()
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.inner.benefits_from_input_partitioning()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inner.children()
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner = Arc::clone(&self.inner).replace_children(children, options)?;
        Ok(self.rewrap(inner))
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn with_new_children_and_same_properties(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
        )
    }

    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        // A reset node runs again as the same operator (a recursive query's
        // iterations), so its record is shared, not fresh.
        let inner = Arc::clone(&self.inner).reset_state()?;
        Ok(Arc::new(DftraceExec {
            inner,
            role: self.role.clone(),
        }))
    }

    fn repartitioned(
        &self,
        target_partitions: usize,
        config: &ConfigOptions,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(self
            .inner
            .repartitioned(target_partitions, config)?
            .map(|inner| self.rewrap(inner)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        match &self.role {
            Role::Operator(record) => {
                // A top rebuilt after the rule (`metrics-only`): the nodes
                // under it get their records now, before they run.
                record.note_unwrapped_descendants(|deferred| {
                    unwrapped_descendants(&self.inner, deferred, &crate::literals::current())
                });
                record.note_executed(&self.inner);
                record.note_top_execute();
                self.execute_operator(record, partition, context)
            }
            Role::QueryRoot(root) => Arc::clone(root).execute(&self.inner, partition, context),
        }
    }

    fn metrics(&self) -> Option<MetricsSet> {
        // Read once per query end with the span pass, which asks the node.
        dftrace_registry::node_metrics(self.inner.as_ref())
    }

    #[expect(deprecated, reason = "passed through for hosts that still call it")]
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        self.inner.partition_statistics(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.inner.statistics_from_inputs(input_stats, args)
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.inner.child_stats_requests(partition)
    }

    fn supports_limit_pushdown(&self) -> bool {
        self.inner.supports_limit_pushdown()
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        self.inner.with_fetch(limit).map(|inner| self.rewrap(inner))
    }

    fn fetch(&self) -> Option<usize> {
        self.inner.fetch()
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        self.inner.cardinality_effect()
    }

    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(self
            .inner
            .try_swapping_with_projection(projection)?
            .map(|inner| self.rewrap(inner)))
    }

    fn gather_filters_for_pushdown(
        &self,
        phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        self.inner
            .gather_filters_for_pushdown(phase, parent_filters, config)
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let FilterPushdownPropagation {
            filters,
            updated_node,
        } = self
            .inner
            .handle_child_pushdown_result(phase, child_pushdown_result, config)?;
        Ok(FilterPushdownPropagation {
            filters,
            updated_node: updated_node.map(|inner| self.rewrap(inner)),
        })
    }

    fn with_new_state(&self, state: Arc<dyn Any + Send + Sync>) -> Option<Arc<dyn ExecutionPlan>> {
        self.inner
            .with_new_state(state)
            .map(|inner| self.rewrap(inner))
    }

    fn try_pushdown_sort(
        &self,
        order: &[PhysicalSortExpr],
    ) -> Result<SortOrderPushdownResult<Arc<dyn ExecutionPlan>>> {
        Ok(match self.inner.try_pushdown_sort(order)? {
            SortOrderPushdownResult::Exact { inner } => SortOrderPushdownResult::Exact {
                inner: self.rewrap(inner),
            },
            SortOrderPushdownResult::Inexact { inner } => SortOrderPushdownResult::Inexact {
                inner: self.rewrap(inner),
            },
            SortOrderPushdownResult::Unsupported => SortOrderPushdownResult::Unsupported,
        })
    }

    fn with_preserve_order(&self, preserve_order: bool) -> Option<Arc<dyn ExecutionPlan>> {
        self.inner
            .with_preserve_order(preserve_order)
            .map(|inner| self.rewrap(inner))
    }

    #[cfg(feature = "proto")]
    fn try_to_proto(
        &self,
        ctx: &datafusion_physical_plan::proto::ExecutionPlanEncodeCtx<'_>,
    ) -> Result<Option<datafusion_proto_models::protobuf::PhysicalPlanNode>> {
        self.inner.try_to_proto(ctx)
    }
}

/// Marks a live span whose custom fields are set.
struct FieldsSet;

/// An operator's partition stream: two clock reads (at the first poll and
/// at the end) and, while the preview is filling, a copy of the first rows.
/// Nothing else per poll.
struct OperatorStream {
    inner: SendableRecordBatchStream,
    record: Arc<NodeRecord>,
    /// Set as the thread's current operator around each poll.
    key: dftrace_registry::OperatorKey,
    /// Live spans only: the children's records.
    children: Vec<Arc<NodeRecord>>,
    started: bool,
    ended: bool,
}

impl OperatorStream {
    fn new(
        inner: SendableRecordBatchStream,
        record: Arc<NodeRecord>,
        children: Vec<Arc<NodeRecord>>,
    ) -> Self {
        OperatorStream {
            inner,
            key: record.key(),
            record,
            children,
            started: false,
            ended: false,
        }
    }

    /// Under a live span (entered around this poll by upstream's stream):
    /// the host's fields, at the stream's first poll.
    fn on_first_poll_live(&self) {
        let Some(live) = self.record.live() else {
            return;
        };
        if live.custom_fields.is_empty() {
            return;
        }
        let span = tracing::Span::current();
        // Partitions share upstream's span: the first to run marks it (in
        // its registry extensions, which go with the span) and sets the
        // fields once.
        let first = span
            .with_subscriber(|(id, dispatch)| {
                let registry = dispatch.downcast_ref::<Registry>()?;
                let data = registry.span_data(id)?;
                let mut extensions = data.extensions_mut();
                if extensions.get_mut::<FieldsSet>().is_some() {
                    return Some(false);
                }
                extensions.insert(FieldsSet);
                Some(true)
            })
            .flatten()
            .unwrap_or(false);
        if first {
            for (key, value) in &live.custom_fields {
                span.set_attribute(key.clone(), value.clone());
            }
        }
    }

    /// Under a live span: ERROR where the error started (no child saw it).
    fn on_error_live(&self, error: &DataFusionError) {
        if let Some(live) = self.record.live()
            && !self.children.iter().any(|child| child.error().is_some())
        {
            let message = crate::literals::error_text(error.to_string(), live.record_literals);
            tracing::Span::current().set_status(opentelemetry::trace::Status::error(message));
        }
    }

    fn end(&mut self) {
        if self.started && !self.ended {
            self.ended = true;
            self.record.note_end();
        }
    }
}

impl Stream for OperatorStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.started {
            self.started = true;
            self.record.note_start();
            self.on_first_poll_live();
        }
        let poll = {
            // Functions called inside the poll know their operator.
            let _operator = dftrace_registry::enter_operator(self.key);
            self.inner.poll_next_unpin(cx)
        };
        match &poll {
            Poll::Ready(Some(Ok(batch))) => {
                self.record.note_batch(batch.num_rows());
                self.record.offer_preview(batch);
            }
            Poll::Ready(Some(Err(error))) => {
                self.on_error_live(error);
                self.record.note_error(error);
                self.end();
            }
            Poll::Ready(None) => self.end(),
            Poll::Pending => {}
        }
        poll
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl RecordBatchStream for OperatorStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for OperatorStream {
    fn drop(&mut self) {
        // A stream dropped before its end (a `LIMIT` upstream, a cancelled
        // query) ends here.
        self.end();
    }
}

/// Every node under `node` down to the next wrapped one, each with an
/// unwrapped record holding its description (`metrics-only`).
pub(crate) fn unwrapped_descendants(
    node: &Arc<dyn ExecutionPlan>,
    deferred: &Arc<DeferredOptions>,
    literals: &QueryLiterals,
) -> Vec<Executed> {
    fn visit(
        node: &Arc<dyn ExecutionPlan>,
        deferred: &Arc<DeferredOptions>,
        literals: &QueryLiterals,
        out: &mut Vec<Executed>,
    ) {
        for child in node.children() {
            // A wrapped node reports itself when it runs.
            if DftraceExec::of(child.as_ref()).is_some() {
                continue;
            }
            let record = NodeRecord::unwrapped(Arc::clone(deferred));
            record.describe(child.as_ref(), literals);
            out.push(Executed {
                inner: Arc::clone(child),
                record: Arc::new(record),
            });
            visit(child, deferred, literals, out);
        }
    }
    let mut out = Vec::new();
    visit(node, deferred, literals, &mut out);
    out
}
