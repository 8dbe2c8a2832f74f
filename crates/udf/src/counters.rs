//! Each query's function figures, kept in its root span's extensions (as
//! `dftrace-object-store-registry` keeps storage counters), so concurrent
//! queries never mix.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

/// One function's figures in one query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionFigures {
    /// `scalar`.
    pub kind: &'static str,
    /// Evaluations (one per batch).
    pub calls: u64,
    /// Input rows over all calls.
    pub rows: u64,
    /// Time inside the function.
    pub time_ns: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// The first call's start and the last call's end, Unix nanoseconds.
    pub first_start_unix_ns: u64,
    /// See `first_start_unix_ns`.
    pub last_end_unix_ns: u64,
    /// The argument types it was called with (`Int64, Utf8`), never values.
    pub argument_types: BTreeSet<String>,
}

/// One query's figures by function name.
#[derive(Debug, Default)]
pub(crate) struct QueryFunctions {
    by_name: Mutex<BTreeMap<String, FunctionFigures>>,
}

impl QueryFunctions {
    pub(crate) fn update(&self, name: &str, update: impl FnOnce(&mut FunctionFigures)) {
        let mut by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        match by_name.get_mut(name) {
            Some(figures) => update(figures),
            None => {
                let mut figures = FunctionFigures::default();
                update(&mut figures);
                by_name.insert(name.to_owned(), figures);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, FunctionFigures> {
        self.by_name
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The figures of the query enclosing the current span (the nearest
/// ancestor named `dftrace.query`); `None` outside a query or without a
/// `tracing-subscriber` registry.
pub(crate) fn current_query() -> Option<Arc<QueryFunctions>> {
    dftrace_registry::current_query_state::<QueryFunctions>()
}

/// The figures recorded for the query whose root span is `query_span`, by
/// function name (empty when none of its functions ran).
pub fn query_functions(query_span: &tracing::Span) -> BTreeMap<String, FunctionFigures> {
    dftrace_registry::query_state::<QueryFunctions>(query_span)
        .map(|functions| functions.snapshot())
        .unwrap_or_default()
}
