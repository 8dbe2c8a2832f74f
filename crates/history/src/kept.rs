//! The kept queries: a bounded queue, newest last.

use dftrace_registry::OperatorFigures;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// One query as it ended: what `dftrace.queries` shows, and its operators.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptQuery {
    /// Hex trace id (32 zeros when no OpenTelemetry layer is installed).
    pub trace_id: String,
    /// The root span's run id.
    pub run_id: String,
    /// The literal-free SQL fingerprint, when the SQL was known.
    pub fingerprint: Option<String>,
    /// The SQL text, only with `rules.record_sql`.
    pub sql: Option<String>,
    /// Start, Unix nanoseconds.
    pub start_unix_ns: i64,
    /// From the root span's start to the query's end.
    pub duration_ns: i64,
    /// The error's kind (DataFusion's prefix, `Arrow error`, `Execution
    /// error`, ...) on failure; never its message, which can quote values.
    pub error_kind: Option<String>,
    /// The query was dropped before its end (cancelled, or its consumer
    /// stopped reading).
    pub cancelled: bool,
    /// Rows returned, on success.
    pub output_rows: Option<i64>,
    /// Bytes the scans read (`bytes_scanned` over operators).
    pub bytes_scanned: Option<i64>,
    /// Bytes spilled to disk over operators.
    pub spilled_bytes: Option<i64>,
    /// The most memory pool reservation the query held at once, with
    /// `dftrace-memory` observing the pool.
    pub peak_memory_bytes: Option<i64>,
    /// Reservations the pool refused the query, with `dftrace-memory`.
    pub failed_reservations: Option<i64>,
    /// Storage requests made under the query.
    pub storage_requests: Option<i64>,
    /// Bytes read from storage.
    pub storage_bytes_read: Option<i64>,
    /// Bytes written to storage.
    pub storage_bytes_written: Option<i64>,
    /// The operators that ran, top first.
    pub operators: Vec<OperatorFigures>,
}

impl KeptQuery {
    /// The operator with the largest own time.
    pub fn slowest_operator(&self) -> Option<&OperatorFigures> {
        self.operators
            .iter()
            .filter(|op| op.self_time_ns.is_some())
            .max_by_key(|op| op.self_time_ns)
    }

    /// What the query holds in memory, estimated from its fields.
    pub fn estimated_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let operators: usize = self
            .operators
            .iter()
            .map(|op| {
                std::mem::size_of::<OperatorFigures>()
                    + op.name.len()
                    + op.description.len()
                    + op.metrics
                        .iter()
                        .map(|(name, _)| std::mem::size_of::<(String, i64)>() + name.len())
                        .sum::<usize>()
            })
            .sum();
        std::mem::size_of::<Self>()
            + self.trace_id.len()
            + self.run_id.len()
            + text(&self.fingerprint)
            + text(&self.sql)
            + text(&self.error_kind)
            + operators
    }
}

/// The last queries of a session, bounded by count and by bytes.
#[derive(Debug)]
pub struct QueryHistory {
    max_queries: usize,
    max_bytes: usize,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    queries: VecDeque<(Arc<KeptQuery>, usize)>,
    bytes: usize,
}

impl QueryHistory {
    /// An empty history keeping at most `max_queries` queries and
    /// `max_bytes` bytes of them.
    pub fn new(max_queries: usize, max_bytes: usize) -> Self {
        QueryHistory {
            max_queries,
            max_bytes,
            kept: Mutex::new(Kept::default()),
        }
    }

    /// Keeps `query`, dropping the oldest ones beyond the bounds. A query
    /// larger than `max_bytes` on its own is not kept.
    pub fn keep(&self, query: KeptQuery) {
        let size = query.estimated_bytes();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if size > self.max_bytes || self.max_queries == 0 {
            return;
        }
        kept.queries.push_back((Arc::new(query), size));
        kept.bytes += size;
        while kept.queries.len() > self.max_queries || kept.bytes > self.max_bytes {
            match kept.queries.pop_front() {
                Some((_, size)) => kept.bytes -= size,
                None => break,
            }
        }
    }

    /// The kept queries, oldest first.
    pub fn queries(&self) -> Vec<Arc<KeptQuery>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.queries.iter().map(|(q, _)| Arc::clone(q)).collect()
    }

    /// The estimated bytes the kept queries hold.
    pub fn bytes(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}
