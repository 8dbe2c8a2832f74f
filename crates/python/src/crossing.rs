//! A node of the Python session's plan, seen from this library.
//!
//! dftrace wraps each operator in a node that delegates downcasts to the
//! operator (`ExecutionPlan::downcast_delegate`), so hosts can still ask
//! "is this a `ProjectionExec`?". datafusion-ffi asks the same question when
//! it exports a plan (`FFI_ExecutionPlan::new`: "is this already a foreign
//! plan? then hand back the original"), so a wrapper around a foreign node,
//! given to that node's parent as a new child, would be exported as the
//! bare foreign node and the wrapper lost (the top's wrapper, the only one
//! in the default `metrics-only` mode, too). [`Crossing`] stands in for each
//! foreign node while dftrace's rule runs: it delegates nothing, so the
//! wrappers above it cross the boundary as what they are, and it keeps the
//! children this side gave it, so the operators' records are found again
//! when the query ends.
//!
//! The session's operators may run their children on tasks of their own
//! (`CoalescePartitionsExec`, `RepartitionExec`), spawned on the session's
//! Tokio, which knows nothing of this library's `tracing` spans: a wrapper
//! executed there would find no query to report to. So each child handed to
//! a session's node is [`Entered`]: it executes its node inside the
//! statement's span ([`Statement`]).

use crate::task_context;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion_ffi::execution_plan::FFI_ExecutionPlan;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tracing::Span;

/// What the nodes of one statement's plan share: the span its operators run
/// in (the query's root), from the plan's first `execute` until every
/// partition of the plan has ended; then let go, so the root can close.
#[derive(Debug, Default)]
pub(crate) struct Statement {
    span: Mutex<Option<Span>>,
    ended: AtomicUsize,
}

impl Statement {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Span>> {
        self.span.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the span current here, if none is kept yet.
    fn note_current(&self) {
        let current = Span::current();
        if current.id().is_some() {
            self.lock().get_or_insert(current);
        }
    }

    fn span(&self) -> Option<Span> {
        self.lock().clone()
    }

    /// One of the plan's `partitions` partitions has ended.
    pub(crate) fn partition_ended(&self, partitions: usize) {
        if self.ended.fetch_add(1, Ordering::AcqRel) + 1 >= partitions {
            self.lock().take();
        }
    }
}

#[derive(Debug)]
pub(crate) struct Crossing {
    /// The session's node (a `ForeignExecutionPlan`).
    foreign: Arc<dyn ExecutionPlan>,
    /// The session's export of that node, to call it with the session's own
    /// task context (`crate::task_context`).
    ffi: FFI_ExecutionPlan,
    /// Its children as this side knows them: `Crossing`s at first, then
    /// whatever dftrace's rule put in their place.
    children: Vec<Arc<dyn ExecutionPlan>>,
    statement: Arc<Statement>,
}

impl Crossing {
    /// `plan` and every node under it, each as a `Crossing`.
    pub(crate) fn of_plan(
        plan: Arc<dyn ExecutionPlan>,
        statement: &Arc<Statement>,
    ) -> Arc<dyn ExecutionPlan> {
        let children = plan
            .children()
            .into_iter()
            .map(|child| Crossing::of_plan(Arc::clone(child), statement))
            .collect();
        Arc::new(Crossing {
            // The session's own export (a foreign plan is handed back as is).
            ffi: FFI_ExecutionPlan::new(Arc::clone(&plan), None),
            foreign: plan,
            children,
            statement: Arc::clone(statement),
        })
    }
}

impl Crossing {
    /// The session's node this stands for.
    pub(crate) fn foreign(&self) -> &Arc<dyn ExecutionPlan> {
        &self.foreign
    }
}

impl DisplayAs for Crossing {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.foreign.fmt_as(format, f)
    }
}

impl ExecutionPlan for Crossing {
    fn name(&self) -> &str {
        self.foreign.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.foreign.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.children.iter().collect()
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        // The session's node recomputes its properties either way, as
        // `ForeignExecutionPlan::replace_children` does.
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The session's node gets the new children, each exported entering
        // the statement's span and keeping the session's task context; this
        // side keeps them as they are.
        let entered = children.iter().map(|child| {
            task_context::export_plan(Arc::new(Entered {
                inner: Arc::clone(child),
                statement: Arc::clone(&self.statement),
            }))
        });
        let ffi = task_context::replace_session_children(&self.ffi, entered)?;
        let foreign: Arc<dyn ExecutionPlan> = (&ffi).try_into()?;
        Ok(Arc::new(Crossing {
            foreign,
            ffi,
            children,
            statement: Arc::clone(&self.statement),
        }))
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

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.foreign.apply_expressions(f)
    }

    fn dynamic_expressions_produced(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.foreign.dynamic_expressions_produced()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.foreign.maintains_input_order()
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.statement.note_current();
        if let Some(stream) =
            task_context::execute_with_session_context(&self.ffi, partition, &context)
        {
            return stream;
        }
        // Not run by the session through this side's exports (a plan
        // executed from this side): datafusion-ffi rebuilds the context on
        // the session's side, converting each function of the registry; an
        // executed plan's expressions hold their functions already, so the
        // session's node gets the context without the registry.
        let context = Arc::new(TaskContext::new(
            context.task_id(),
            context.session_id(),
            context.session_config().clone(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            context.runtime_env(),
        ));
        self.foreign.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.foreign.metrics()
    }
}

/// A child handed to a session's node: executes inside the statement's span,
/// whatever thread the session executes it on.
#[derive(Debug)]
struct Entered {
    inner: Arc<dyn ExecutionPlan>,
    statement: Arc<Statement>,
}

impl DisplayAs for Entered {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_as(format, f)
    }
}

impl ExecutionPlan for Entered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inner.children()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Entered {
            inner: Arc::clone(&self.inner).replace_children(
                children,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )?,
            statement: Arc::clone(&self.statement),
        }))
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.inner.maintains_input_order()
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        match self.statement.span() {
            Some(span) => span.in_scope(|| self.inner.execute(partition, context)),
            None => self.inner.execute(partition, context),
        }
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.inner.metrics()
    }
}
