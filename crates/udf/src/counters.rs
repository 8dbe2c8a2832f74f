//! Each query's function figures, kept in its root span's extensions (as
//! `dftrace-object-store-registry` keeps storage counters), so concurrent
//! queries never mix.
//!
//! A function's figures in one query live in one [`FunctionCell`] of
//! atomics: an accumulator or window evaluator holds its cell, and a call
//! takes a lock only when it runs in an operator the cell has not seen
//! last, which matters when DataFusion makes one accumulator per group.

use dftrace_registry::OperatorKey;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// What kind of function: the value of `udf.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FunctionKind {
    /// A scalar function (`ScalarUDF`).
    Scalar,
    /// An aggregate function (`AggregateUDF`), also when it runs as a
    /// window function.
    Aggregate,
    /// A window function (`WindowUDF`).
    Window,
}

impl FunctionKind {
    /// `scalar`, `aggregate` or `window`.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Scalar => "scalar",
            FunctionKind::Aggregate => "aggregate",
            FunctionKind::Window => "window",
        }
    }
}

/// One function's figures in one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionFigures {
    /// Scalar, aggregate or window.
    pub kind: FunctionKind,
    /// Calls into the function: evaluations of a scalar function (one per
    /// batch); `update_batch`, `merge_batch`, `retract_batch`, `state`,
    /// `evaluate` and `convert_to_state` calls of an aggregate's
    /// accumulators; `evaluate*` calls of a window function's evaluators.
    pub calls: u64,
    /// Input rows: the rows of the batches a scalar function was called on,
    /// the rows fed to an aggregate (`update_batch`, `convert_to_state`; a
    /// `FILTER (WHERE ..)` clause's rejected rows not counted), the rows a
    /// window function evaluated.
    pub rows: u64,
    /// Time inside the function over all calls.
    pub time_ns: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// The first call's start and the last call's end, Unix nanoseconds.
    pub first_start_unix_ns: u64,
    /// See `first_start_unix_ns`.
    pub last_end_unix_ns: u64,
    /// The argument types it was called with (`Int64, Utf8`), never values.
    pub argument_types: BTreeSet<String>,
    /// The operators it was called in (known with dftrace-rules' deferred
    /// operator spans; see [`dftrace_registry::current_operator`]).
    pub operators: BTreeSet<OperatorKey>,
}

/// Now, in Unix nanoseconds: the system clock, as operator spans use, so
/// a function span sits inside the operator span it hangs under.
fn unix_ns_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One function's figures in one query, updated without a lock.
#[derive(Debug)]
pub(crate) struct FunctionCell {
    kind: FunctionKind,
    calls: AtomicU64,
    rows: AtomicU64,
    time_ns: AtomicU64,
    errors: AtomicU64,
    first_start_unix_ns: AtomicU64,
    last_end_unix_ns: AtomicU64,
    argument_types: Mutex<BTreeSet<String>>,
    operators: Mutex<BTreeSet<OperatorKey>>,
    /// The operator of the last call (`OperatorKey::get`; 0 for none): the
    /// common case, a call in the operator of the call before, takes no
    /// lock.
    last_operator: AtomicU64,
}

impl FunctionCell {
    fn new(kind: FunctionKind) -> Self {
        FunctionCell {
            kind,
            calls: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            time_ns: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_start_unix_ns: AtomicU64::new(u64::MAX),
            last_end_unix_ns: AtomicU64::new(0),
            argument_types: Mutex::new(BTreeSet::new()),
            operators: Mutex::new(BTreeSet::new()),
            last_operator: AtomicU64::new(0),
        }
    }

    /// Runs `call`, recording it as one call on `rows` input rows.
    pub(crate) fn time<T>(
        &self,
        rows: u64,
        call: impl FnOnce() -> datafusion::error::Result<T>,
    ) -> datafusion::error::Result<T> {
        if let Some(operator) = dftrace_registry::current_operator()
            && self.last_operator.swap(operator.get(), Ordering::Relaxed) != operator.get()
        {
            self.operators
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(operator);
        }
        let started = unix_ns_now();
        let result = call();
        let ended = unix_ns_now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        // The system clock can step back: such a call counts as 0 ns.
        self.time_ns
            .fetch_add(ended.saturating_sub(started), Ordering::Relaxed);
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.first_start_unix_ns
            .fetch_min(started, Ordering::Relaxed);
        self.last_end_unix_ns.fetch_max(ended, Ordering::Relaxed);
        result
    }

    /// Notes the argument types of a call (`Int64, Utf8`), never values.
    pub(crate) fn note_argument_types(&self, types: String) {
        self.argument_types
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(types);
    }

    fn figures(&self) -> FunctionFigures {
        let first = self.first_start_unix_ns.load(Ordering::Relaxed);
        FunctionFigures {
            kind: self.kind,
            calls: self.calls.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            time_ns: self.time_ns.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            first_start_unix_ns: if first == u64::MAX { 0 } else { first },
            last_end_unix_ns: self.last_end_unix_ns.load(Ordering::Relaxed),
            argument_types: self
                .argument_types
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            operators: self
                .operators
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// A function of a query: its name and kind (`first_value` is both an
/// aggregate and a window function, with figures of its own as each).
pub type FunctionId = (String, FunctionKind);

/// One query's figures by function.
#[derive(Debug, Default)]
pub(crate) struct QueryFunctions {
    by_function: Mutex<BTreeMap<FunctionId, Arc<FunctionCell>>>,
}

impl QueryFunctions {
    /// The cell of function `name` of `kind` in this query, made on first
    /// use.
    pub(crate) fn cell(&self, name: &str, kind: FunctionKind) -> Arc<FunctionCell> {
        let mut by_function = self
            .by_function
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Looked up by reference first: a call allocates nothing.
        if let Some(cell) = by_function
            .iter()
            .find(|((known, known_kind), _)| known == name && *known_kind == kind)
            .map(|(_, cell)| cell)
        {
            return Arc::clone(cell);
        }
        let cell = Arc::new(FunctionCell::new(kind));
        by_function.insert((name.to_owned(), kind), Arc::clone(&cell));
        cell
    }

    /// The figures of the functions that were called at least once.
    pub(crate) fn snapshot(&self) -> BTreeMap<FunctionId, FunctionFigures> {
        self.by_function
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(function, cell)| (function.clone(), cell.figures()))
            .filter(|(_, figures)| figures.calls > 0)
            .collect()
    }
}

/// The cell of function `name` in the query enclosing the current span
/// (the nearest ancestor named `dftrace.query`); `None` outside a query or
/// without a `tracing-subscriber` registry.
pub(crate) fn current_cell(name: &str, kind: FunctionKind) -> Option<Arc<FunctionCell>> {
    dftrace_registry::current_query_state::<QueryFunctions>().map(|query| query.cell(name, kind))
}

/// The cell a function found for the operator it last ran in. A scalar
/// function is called once per batch and DataFusion makes an accumulator
/// per group (an aggregate without a groups accumulator) or an evaluator
/// per window partition: finding the query for each would walk the span
/// tree and serialise the partitions on the root span's extensions.
/// Operator keys are never reused, so a match is this query's.
#[derive(Debug, Default)]
pub(crate) struct RecentCell(Mutex<Option<(OperatorKey, Arc<FunctionCell>)>>);

impl RecentCell {
    /// The cell of function `name` of `kind` in the current query;
    /// `on_lookup` runs when the query had to be found (a first call in an
    /// operator, or a call outside one). `None` outside a query.
    pub(crate) fn get(
        &self,
        name: &str,
        kind: FunctionKind,
        on_lookup: impl FnOnce(&FunctionCell),
    ) -> Option<Arc<FunctionCell>> {
        let operator = dftrace_registry::current_operator();
        let mut recent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(operator), Some((known, cell))) = (operator, recent.as_ref())
            && *known == operator
        {
            return Some(Arc::clone(cell));
        }
        let cell = current_cell(name, kind)?;
        on_lookup(&cell);
        if let Some(operator) = operator {
            *recent = Some((operator, Arc::clone(&cell)));
        }
        Some(cell)
    }
}

// A cache, not part of the function's identity: the wrappers that hold one
// are equal and hash as the functions they wrap.
impl PartialEq for RecentCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for RecentCell {}

impl std::hash::Hash for RecentCell {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// The figures recorded for the query whose root span is `query_span`, by
/// function name and kind (empty when none of its functions ran).
pub fn query_functions(query_span: &tracing::Span) -> BTreeMap<FunctionId, FunctionFigures> {
    dftrace_registry::query_state::<QueryFunctions>(query_span)
        .map(|functions| functions.snapshot())
        .unwrap_or_default()
}

/// `Int64, Utf8`: the types of a call's arguments.
pub(crate) fn type_list<'a>(
    types: impl Iterator<Item = &'a datafusion::arrow::datatypes::DataType>,
) -> String {
    types
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{FunctionKind, QueryFunctions};
    use datafusion::error::DataFusionError;

    #[test]
    fn a_cell_counts_calls_rows_errors_and_spans_its_calls() {
        let query = QueryFunctions::default();
        let cell = query.cell("f", FunctionKind::Aggregate);
        cell.time(10, || Ok(())).unwrap();
        let failed: datafusion::error::Result<()> =
            cell.time(5, || Err(DataFusionError::Execution("no".into())));
        assert!(failed.is_err());
        cell.note_argument_types("Int64".into());
        cell.note_argument_types("Int64".into());
        // The same name as another kind of function is another function.
        let window = query.cell("f", FunctionKind::Window);
        window.time(1, || Ok(())).unwrap();
        // A function whose cell was made but never called is not reported.
        let _unused = query.cell("g", FunctionKind::Scalar);
        let snapshot = query.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(snapshot[&("f".to_owned(), FunctionKind::Window)].calls, 1);
        let figures = &snapshot[&("f".to_owned(), FunctionKind::Aggregate)];
        assert_eq!(figures.kind, FunctionKind::Aggregate);
        assert_eq!((figures.calls, figures.rows, figures.errors), (2, 15, 1));
        assert!(figures.first_start_unix_ns > 0);
        assert!(figures.last_end_unix_ns >= figures.first_start_unix_ns);
        assert_eq!(figures.argument_types.len(), 1);
    }
}
