//! The node dftrace's Python rule puts at the top of each plan: it hands the
//! plan's operators the dftrace session they were instrumented for.
//!
//! A plan crossing DataFusion's FFI boundary is executed with a task context
//! rebuilt on this side from the caller's configuration options only
//! (`datafusion-ffi`'s `task_ctx.rs`): session config extensions, where a
//! Rust host's dftrace session lives, do not cross. Without it the query root
//! would fall back to the default `[rules]` settings and run no plugin
//! observer (the metrics summary). This node adds the extension back before
//! the root executes.
//!
//! It also makes the Python application's current OpenTelemetry span, if
//! any, the parent of the root: the root opens when the plan first runs,
//! inside this node's `execute`, where that span's context is attached.
//!
//! When dftrace's rule left the session's nodes as they were (the default
//! `metrics-only` operator spans wrap only the plan's top), the session is
//! shown its own plan as this node's child: the session takes back its own
//! nodes instead of importing dftrace's wrappers and crossings through the
//! FFI for every statement, and `EXPLAIN` and the application's
//! `DataFrame.execution_plan()` show those nodes with their descriptions and
//! metrics. The node still executes through dftrace's wrappers. Should a
//! rule after dftrace's change that plan, the changed plan is instrumented
//! again.

use crate::crossing::Statement;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::RecordBatchStream;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use dftrace::registry::DftraceSession;
use futures::{Stream, StreamExt as _};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Instruments a plan of the session's (dftrace's rule, for a plan another
/// rule changed after it).
pub(crate) trait Instrument: fmt::Debug + Send + Sync {
    fn instrument(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>>;
}

#[derive(Debug)]
pub(crate) struct SessionExec {
    /// What runs: the plan with dftrace's wrappers.
    input: Arc<dyn ExecutionPlan>,
    /// The session's own plan, shown as the child when `input` runs it
    /// unchanged (else `input` is shown), and what instruments it again
    /// should a later rule change it.
    shown: Option<(Arc<dyn ExecutionPlan>, Arc<dyn Instrument>)>,
    session: Arc<DftraceSession>,
    /// The application's span current when the statement was planned.
    parent: Option<opentelemetry::Context>,
    statement: Arc<Statement>,
}

impl SessionExec {
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        shown: Option<(Arc<dyn ExecutionPlan>, Arc<dyn Instrument>)>,
        session: Arc<DftraceSession>,
        parent: Option<opentelemetry::Context>,
        statement: Arc<Statement>,
    ) -> Self {
        Self {
            input,
            shown,
            session,
            parent,
            statement,
        }
    }
}

impl DisplayAs for SessionExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DftraceSessionExec")
    }
}

impl ExecutionPlan for SessionExec {
    fn name(&self) -> &str {
        "DftraceSessionExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.shown.as_ref().map_or(&self.input, |(shown, _)| shown)]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // No expressions of its own.
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(child), true) = (children.pop(), children.is_empty()) else {
            return Err(DataFusionError::Internal(
                "DftraceSessionExec takes exactly one child".to_owned(),
            ));
        };
        if let Some((_, instrument)) = &self.shown {
            // The session's plan, changed by a rule after dftrace's:
            // instrumented again, as that rule left it.
            return instrument.instrument(child);
        }
        Ok(Arc::new(SessionExec::new(
            child,
            None,
            Arc::clone(&self.session),
            self.parent.clone(),
            Arc::clone(&self.statement),
        )))
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let config = context
            .session_config()
            .clone()
            .with_extension(Arc::clone(&self.session));
        let context = Arc::new(TaskContext::new(
            context.task_id(),
            context.session_id(),
            config,
            context.scalar_functions().clone(),
            context.higher_order_functions().clone(),
            context.aggregate_functions().clone(),
            context.window_functions().clone(),
            context.runtime_env(),
        ));
        let _parent = self.parent.clone().map(opentelemetry::Context::attach);
        let partitions = self.input.properties().partitioning.partition_count();
        match self.input.execute(partition, context) {
            Ok(inner) => Ok(Box::pin(PartitionStream {
                inner,
                statement: Arc::clone(&self.statement),
                partitions,
                ended: false,
            })),
            Err(error) => {
                self.statement.partition_ended(partitions);
                Err(error)
            }
        }
    }

    fn metrics(&self) -> Option<MetricsSet> {
        None
    }
}

/// A partition of the statement: tells the statement when it has ended (run
/// to its end, or dropped).
struct PartitionStream {
    inner: SendableRecordBatchStream,
    statement: Arc<Statement>,
    partitions: usize,
    ended: bool,
}

impl PartitionStream {
    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.statement.partition_ended(self.partitions);
        }
    }
}

impl Stream for PartitionStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let poll = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(None) = poll {
            self.end();
        }
        poll
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl RecordBatchStream for PartitionStream {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
}

impl Drop for PartitionStream {
    fn drop(&mut self) {
        self.end();
    }
}
