//! The top of a plan whose root query span dftrace opened itself: the
//! planner instrumentation opens it before the analyzer (a host that ran
//! `ctx.sql(..).collect()`) and hands it to the plan; a plan the exec rule
//! wrapped outside any root opens one when it first runs ([`RootState`]);
//! and a plan a datafusion-distributed worker runs builds its operator
//! spans under the worker's request span.

use crate::operators::{Collector, DftraceExec, Outcome, PlanRoot, Role, build_operator_spans};
use crate::query::QuerySpan;
use crate::span_helpers::{inside_span_named, span_tracer};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use dftrace_registry::keys::WORKER_SPAN_NAME;
use dftrace_registry::literals::QueryLiterals;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A query whose root span dftrace opened for a host that did not (it ran
/// `ctx.sql(..).collect()`, `execute_stream` or `physical_plan::collect`):
/// the plan's partitions run inside that root, which ends when every
/// partition's stream has ended (or the plan is dropped).
#[derive(Debug)]
pub(crate) struct RootState {
    query: Mutex<RootQuery>,
    /// The node the first `execute` ran (the plan as it ran), for the
    /// metrics summary.
    executed: OnceLock<Arc<dyn ExecutionPlan>>,
    /// The root span to poll the partitions in, once opened. Let go of when
    /// the query ends, so the span closes then: a host may keep the plan
    /// (to show its metrics; datafusion-python's DataFrame keeps it).
    span: Mutex<RootSpan>,
    ended: AtomicUsize,
    /// Partitions that ran to their end (the others were dropped before).
    completed: AtomicUsize,
    rows: AtomicUsize,
    error: OnceLock<String>,
}

#[derive(Debug)]
enum RootQuery {
    /// Opened at the plan's first `execute`, with the literal set its
    /// operators' descriptions were masked with.
    Lazy(Arc<QueryLiterals>),
    Open(Box<QuerySpan>),
    /// A plan a datafusion-distributed worker runs for a request: its
    /// operator spans go under the request's `dftrace.worker` span (the span
    /// current at the first `execute`), the query's root being in another
    /// process. Only the span's OpenTelemetry context is kept: the request's
    /// span ends with the request.
    Worker {
        parent: opentelemetry::Context,
        tracer: Option<Arc<opentelemetry::global::BoxedTracer>>,
        collector: Arc<Collector>,
        started: Instant,
    },
    Done,
}

#[derive(Debug)]
enum RootSpan {
    NotOpened,
    Open(Span),
    /// On a worker each partition is polled in the span of the request that
    /// executed it (so that span can end with its request); after the end, a
    /// plan run again runs in whatever span is current.
    Elsewhere,
}

impl RootState {
    /// A root opened while planning (its span is the planning's parent).
    pub(crate) fn started(query: QuerySpan) -> Self {
        let span = Mutex::new(RootSpan::Open(query.span().clone()));
        RootState {
            query: Mutex::new(RootQuery::Open(Box::new(query))),
            executed: OnceLock::new(),
            span,
            ended: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            rows: AtomicUsize::new(0),
            error: OnceLock::new(),
        }
    }

    /// A root to open when the plan first runs; `literals` are the plan's.
    pub(crate) fn lazy(literals: Arc<QueryLiterals>) -> Self {
        RootState {
            query: Mutex::new(RootQuery::Lazy(literals)),
            executed: OnceLock::new(),
            span: Mutex::new(RootSpan::NotOpened),
            ended: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            rows: AtomicUsize::new(0),
            error: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RootQuery> {
        self.query.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The root span, opened now if it is not yet (`None` on a worker, or
    /// once the query has ended).
    fn span(&self, context: &TaskContext) -> Result<Option<Span>> {
        let mut slot = self.span.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            RootSpan::Open(span) => return Ok(Some(span.clone())),
            RootSpan::Elsewhere => return Ok(None),
            RootSpan::NotOpened => {}
        }
        let mut query = self.lock();
        let RootQuery::Lazy(literals) = &*query else {
            return Err(DataFusionError::Internal(
                "a dftrace query root without a span".to_owned(),
            ));
        };
        let literals = Arc::clone(literals);
        if inside_span_named(WORKER_SPAN_NAME) {
            let current = Span::current();
            *query = RootQuery::Worker {
                parent: current.context(),
                tracer: span_tracer(&current),
                collector: Arc::default(),
                started: Instant::now(),
            };
            *slot = RootSpan::Elsewhere;
            return Ok(None);
        }
        let opened = QuerySpan::start_auto(context.session_config(), Some(literals))?;
        let span = opened.span().clone();
        *query = RootQuery::Open(Box::new(opened));
        *slot = RootSpan::Open(span.clone());
        Ok(Some(span))
    }

    fn partition_ended(&self, partitions: usize) {
        if self.ended.fetch_add(1, Ordering::AcqRel) + 1 >= partitions {
            self.finish();
        }
    }

    /// Records the outcome and ends the root (once).
    fn finish(&self) {
        let query = std::mem::replace(&mut *self.lock(), RootQuery::Done);
        // The partitions' streams hold the span until they are dropped.
        *self.span.lock().unwrap_or_else(PoisonError::into_inner) = RootSpan::Elsewhere;
        match query {
            RootQuery::Open(query) => match self.error.get() {
                Some(error) => query.record_error(error),
                // A partition that ran was dropped before its end: the host
                // cancelled, or stopped reading. (Partitions it never ran
                // do not count: a host may run only some.)
                None if self.completed.load(Ordering::Acquire)
                    < self.ended.load(Ordering::Acquire) =>
                {
                    query.record_cancelled();
                }
                None => {
                    query.record_success(self.rows.load(Ordering::Relaxed), self.executed.get())
                }
            },
            RootQuery::Worker {
                parent,
                tracer,
                collector,
                started,
            } => {
                let outcome = Outcome {
                    elapsed: started.elapsed(),
                    failed: self.error.get().is_some(),
                };
                // The query's literals are in another process: each
                // operator's own, as its description shows them, are masked.
                let literals = QueryLiterals::default();
                // A worker has no root of its own: no plugin figures.
                build_operator_spans(
                    &parent,
                    tracer,
                    collector.take(),
                    outcome,
                    false,
                    &literals,
                    None,
                );
            }
            RootQuery::Lazy(_) | RootQuery::Done => {}
        }
    }
}

/// The wrapper at a plan's top runs each partition here, inside the root.
impl PlanRoot for RootState {
    fn execute(
        self: Arc<Self>,
        inner: &Arc<dyn ExecutionPlan>,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let partitions = inner.properties().partitioning.partition_count();
        self.executed.get_or_init(|| Arc::clone(inner));
        let span = self.span(&context)?.unwrap_or_else(Span::current);
        if let RootQuery::Worker { collector, .. } = &*self.lock() {
            // The operators this request runs report to this plan.
            Collector::attach(collector, &span);
        }
        match span.in_scope(|| inner.execute(partition, context)) {
            Ok(stream) => Ok(Box::pin(RootStream {
                inner: stream,
                state: Arc::clone(&self),
                span,
                partitions,
                ended: false,
            })),
            Err(error) => {
                self.error.get_or_init(|| error.to_string());
                self.partition_ended(partitions);
                Err(error)
            }
        }
    }
}

impl Drop for RootState {
    fn drop(&mut self) {
        // A plan dropped before every partition ran to its end: the query
        // ends with what ran. One that never ran ends with no outcome.
        if self.ended.load(Ordering::Acquire) > 0 {
            self.finish();
        }
    }
}

/// A partition stream of a query whose root dftrace opened: polled inside
/// the root span, so spawned tasks and storage requests land under it.
struct RootStream {
    inner: SendableRecordBatchStream,
    state: Arc<RootState>,
    span: Span,
    partitions: usize,
    ended: bool,
}

impl RootStream {
    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.state.partition_ended(self.partitions);
        }
    }
}

impl Stream for RootStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let poll = {
            let _entered = this.span.enter();
            this.inner.poll_next_unpin(cx)
        };
        match &poll {
            Poll::Ready(Some(Ok(batch))) => {
                self.state
                    .rows
                    .fetch_add(batch.num_rows(), Ordering::Relaxed);
            }
            Poll::Ready(Some(Err(error))) => {
                self.state.error.get_or_init(|| error.to_string());
            }
            Poll::Ready(None) => {
                if !self.ended {
                    self.state.completed.fetch_add(1, Ordering::Release);
                }
                self.end();
            }
            Poll::Pending => {}
        }
        poll
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl RecordBatchStream for RootStream {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
}

impl Drop for RootStream {
    fn drop(&mut self) {
        self.end();
    }
}

/// Wraps `plan` in the query root `query` opened for it.
pub(crate) fn with_query_root(
    plan: Arc<dyn ExecutionPlan>,
    query: QuerySpan,
) -> Arc<dyn ExecutionPlan> {
    Arc::new(DftraceExec::new(
        plan,
        Role::QueryRoot(Arc::new(RootState::started(query))),
    ))
}
