//! Each query's function figures, kept in its root span's extensions (as
//! `dftrace-object-store-registry` keeps storage counters), so concurrent
//! queries never mix.

use dftrace_registry::QUERY_SPAN_NAME;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use tracing_subscriber::registry::{LookupSpan, Registry};

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
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let id = dispatch.current_span().id().cloned()?;
        let span = registry.span(&id)?;
        let query = span.scope().find(|s| s.name() == QUERY_SPAN_NAME)?;
        let mut extensions = query.extensions_mut();
        if extensions.get_mut::<Arc<QueryFunctions>>().is_none() {
            extensions.insert(Arc::new(QueryFunctions::default()));
        }
        extensions
            .get_mut::<Arc<QueryFunctions>>()
            .map(|c| Arc::clone(c))
    })
}

/// The figures recorded for the query whose root span is `query_span`, by
/// function name (empty when none of its functions ran).
pub fn query_functions(query_span: &tracing::Span) -> BTreeMap<String, FunctionFigures> {
    query_span
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(id)?;
            let extensions = span.extensions();
            extensions
                .get::<Arc<QueryFunctions>>()
                .map(|functions| functions.snapshot())
        })
        .flatten()
        .unwrap_or_default()
}
