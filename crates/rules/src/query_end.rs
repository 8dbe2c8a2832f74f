//! The end of a query, off its path: its operator spans are built and its
//! observers told on a thread of dftrace's own once the query has returned
//! its last batch, so the caller does not wait for them. The job holds the
//! root span, which closes when the job is done: [`crate::QueryEnded`]
//! still resolves once everything of the query is built.
//!
//! The queue is bounded: when it is full (queries end faster than one
//! thread builds their spans) the query's end runs on the query's own
//! thread, which slows the query down instead of losing its spans.

use crate::operators::Executed;
use crate::operators::{BuiltOperators, Outcome, build_operator_spans};
use datafusion::physical_plan::ExecutionPlan;
use dftrace_registry::literals::QueryLiterals;
use dftrace_registry::{OperatorAttributes, QueryEnd, QueryObserver};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Query ends waiting for the worker, at most.
const QUEUE: usize = 1024;

/// What the end of one query needs.
pub(crate) struct QueryEndJob {
    /// Dropped once the observers have been told (first, so the query
    /// leaves the running ones before its root closes).
    pub(crate) _in_flight: Option<crate::query::InFlightQuery>,
    pub(crate) span: Span,
    pub(crate) literals: Arc<QueryLiterals>,
    pub(crate) executed: Vec<Executed>,
    pub(crate) plan: Option<Arc<dyn ExecutionPlan>>,
    pub(crate) observers: Vec<Arc<dyn QueryObserver>>,
    pub(crate) operator_attributes: Vec<Arc<dyn OperatorAttributes>>,
    pub(crate) unsampled: bool,
    pub(crate) run_id: String,
    pub(crate) fingerprint: Option<String>,
    pub(crate) sql: Option<String>,
    pub(crate) started_at: SystemTime,
    pub(crate) elapsed: Duration,
    pub(crate) rows: Option<usize>,
    pub(crate) error: Option<String>,
    pub(crate) cancelled: bool,
}

impl QueryEndJob {
    /// Builds the operator spans of the plans run under the root and hands
    /// the executed plan (the one given, else the one run under the root)
    /// to the observers, such as the metrics summary; each node's metrics
    /// are read once for all of them.
    fn run(self) {
        dftrace_registry::read_metrics_once(|| self.run_reading_metrics_once());
    }

    fn run_reading_metrics_once(self) {
        let first = self.executed.first().map(|node| Arc::clone(&node.inner));
        let mut built = BuiltOperators::default();
        if !self.unsampled {
            let outcome = Outcome {
                elapsed: self.elapsed,
                failed: self.error.is_some(),
            };
            let tracer = crate::span_helpers::span_tracer(&self.span);
            let collect = self.observers.iter().any(|o| o.wants_operators());
            built = build_operator_spans(
                &self.span.context(),
                tracer,
                self.executed,
                outcome,
                collect,
                &self.literals,
                Some((&self.span, &self.operator_attributes)),
            );
        }
        if self.observers.is_empty() {
            return;
        }
        // Without a plan from the host: the first operator that ran is the
        // top of the plan (a parent runs before its children).
        let plan = self.plan.as_ref().or(first.as_ref());
        let end = QueryEnd {
            span: &self.span,
            run_id: &self.run_id,
            fingerprint: self.fingerprint.as_deref(),
            sql: self.sql.as_deref(),
            started: self.started_at,
            operators: &built.figures,
            ran_operators: &built.ran,
            plan,
            elapsed: self.elapsed,
            rows: self.rows,
            error: self.error.clone(),
            cancelled: self.cancelled,
            unsampled: self.unsampled,
        };
        for observer in &self.observers {
            observer.on_query_end(&end);
        }
    }
}

/// The thread query ends run on, and what is queued for it.
struct Worker {
    sender: SyncSender<QueryEndJob>,
    /// Jobs handed over and not done yet.
    pending: AtomicUsize,
    /// Signalled when `pending` reaches zero (for [`flush`]).
    idle: (Mutex<()>, Condvar),
}

static WORKER: OnceLock<Option<Worker>> = OnceLock::new();

fn worker() -> Option<&'static Worker> {
    WORKER
        .get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
            let spawned = std::thread::Builder::new()
                .name("dftrace-query-end".to_owned())
                .spawn(move || work(receiver));
            // Without a thread of its own every end runs on the query's.
            spawned.ok()?;
            dftrace_registry::register_pending_work(flush);
            Some(Worker {
                sender,
                pending: AtomicUsize::new(0),
                idle: (Mutex::new(()), Condvar::new()),
            })
        })
        .as_ref()
}

fn work(receiver: Receiver<QueryEndJob>) {
    while let Ok(job) = receiver.recv() {
        // A panicking observer must not stop the ends of later queries.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
        if let Some(worker) = WORKER.get().and_then(Option::as_ref)
            && worker.pending.fetch_sub(1, Ordering::AcqRel) == 1
        {
            let _guard = worker.idle.0.lock().unwrap_or_else(PoisonError::into_inner);
            worker.idle.1.notify_all();
        }
    }
}

/// Hands `job` to the worker, or runs it here when the queue is full.
pub(crate) fn submit(job: QueryEndJob) {
    let Some(worker) = worker() else {
        job.run();
        return;
    };
    worker.pending.fetch_add(1, Ordering::AcqRel);
    if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) =
        worker.sender.try_send(job)
    {
        worker.pending.fetch_sub(1, Ordering::AcqRel);
        job.run();
    }
}

/// Waits up to `timeout` for every queued query end; `true` when none is
/// left.
fn flush(timeout: Duration) -> bool {
    let Some(worker) = WORKER.get().and_then(Option::as_ref) else {
        return true;
    };
    let deadline = Instant::now() + timeout;
    let mut guard = worker.idle.0.lock().unwrap_or_else(PoisonError::into_inner);
    while worker.pending.load(Ordering::Acquire) > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        guard = worker
            .idle
            .1
            .wait_timeout(guard, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}
