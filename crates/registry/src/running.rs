//! The queries in flight: dftrace-rules adds each query of a session whose
//! services hold a [`RunningQueries`] (`dftrace-history` inserts one) when
//! its root opens and removes it once its end has been told to the
//! observers, so a finished query leaves `dftrace.running` only when it is
//! in `dftrace.queries`. What a running query shows is read when asked for
//! ([`RunningQuery::snapshot`]), from the counters its operators keep.
//!
//! Every query of the process is also counted ([`queries_in_flight`]), for
//! the OpenTelemetry gauge of queries in flight.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Where a running query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryPhase {
    /// Analyzing, optimizing, planning: no operator has run yet.
    Planning,
    /// Its operators run.
    Executing,
    /// It has ended; its row in `dftrace.queries` is being written (the
    /// operators show as they ended).
    Ending,
}

impl QueryPhase {
    /// `planning`, `executing` or `ending`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryPhase::Planning => "planning",
            QueryPhase::Executing => "executing",
            QueryPhase::Ending => "ending",
        }
    }
}

/// One operator of a running query, as far as it has run. Live operator
/// spans (`rules.operator_spans = "live"`) keep no such figures: a query
/// under them shows no operators and stays in `planning`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningOperator {
    /// Its position in the query's plans, numbered as `dftrace.operators`
    /// numbers them, over the operators that have run so far (an operator
    /// that starts later, a join's probe side, can shift the ids after it
    /// until every operator has run).
    pub id: u64,
    /// The `id` of the operator it feeds.
    pub parent: Option<u64>,
    /// The operator's name.
    pub name: String,
    /// Rows it has produced so far, over its partitions.
    pub rows: u64,
    /// Batches it has produced so far.
    pub batches: u64,
    /// Partitions that have started.
    pub partitions_started: u64,
    /// Partitions that have ended.
    pub partitions_done: u64,
    /// Partitions it has in all.
    pub partitions: u64,
}

/// A running query as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningSnapshot {
    /// Hex trace id.
    pub trace_id: String,
    /// The root span's run id.
    pub run_id: String,
    /// The literal-free SQL fingerprint, when the SQL is known.
    pub fingerprint: Option<String>,
    /// When the root opened.
    pub started: SystemTime,
    /// Planning or executing.
    pub phase: QueryPhase,
    /// Rows the query's top operator has produced so far.
    pub output_rows: u64,
    /// The most memory pool reservation it has held so far (with
    /// `dftrace-memory`).
    pub peak_memory_bytes: Option<u64>,
    /// Its operators that have run, top first.
    pub operators: Vec<RunningOperator>,
}

/// A query in flight, read when asked for.
pub trait RunningQuery: Send + Sync + fmt::Debug {
    /// What the query shows now.
    fn snapshot(&self) -> RunningSnapshot;
}

/// One session's queries in flight, a service of the session.
#[derive(Debug, Default)]
pub struct RunningQueries {
    next: AtomicU64,
    queries: Mutex<BTreeMap<u64, Arc<dyn RunningQuery>>>,
}

impl RunningQueries {
    /// Adds `query` until the returned entry is dropped.
    pub fn add(self: &Arc<Self>, query: Arc<dyn RunningQuery>) -> RunningEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, query);
        RunningEntry {
            queries: Arc::clone(self),
            id,
        }
    }

    /// The queries in flight now, oldest first.
    pub fn snapshots(&self) -> Vec<RunningSnapshot> {
        let queries: Vec<Arc<dyn RunningQuery>> = self
            .queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        queries.iter().map(|query| query.snapshot()).collect()
    }

    /// How many queries are in flight.
    pub fn len(&self) -> usize {
        self.queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A query's place among the running ones; dropping it removes the query.
#[derive(Debug)]
pub struct RunningEntry {
    queries: Arc<RunningQueries>,
    id: u64,
}

impl Drop for RunningEntry {
    fn drop(&mut self) {
        self.queries
            .queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Queries of the process whose root is open.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// How many queries of the process are in flight (roots opened by
/// dftrace-rules and not yet ended).
pub fn queries_in_flight() -> u64 {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// Counts one query in flight until dropped.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// One more query in flight.
    pub fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}
