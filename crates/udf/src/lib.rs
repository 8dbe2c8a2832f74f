//! `dftrace-udf`: a DataFusion session's scalar functions observed per
//! query.
//!
//! With `udf.enabled` (every preset), the `udf` plugin wraps the session's
//! scalar functions when the session is built: the host's own always,
//! DataFusion's built-in ones only with `udf.include_builtin`. The wrapper
//! ([`ObservedScalar`]) passes every method through (name, aliases,
//! signature, return type, simplification, coercion, ordering,
//! documentation: `SHOW FUNCTIONS` and `information_schema` are unchanged)
//! and times each evaluation. Each query records, per function, its calls
//! (one per batch), input rows, time inside the function, errors and the
//! argument types it was called with (never values), kept in the query's
//! root span like the storage counters.
//!
//! When the query ends, each function that ran gets one span under the root
//! span, named for the function, with `udf.name`, `udf.kind`, `udf.calls`,
//! `udf.rows`, `udf.time_ns`, `udf.errors`, `udf.params` (types) and
//! `udf.version` (from `[udf.versions]`), from the first call's start to
//! the last call's end — one span per evaluation would be one per batch,
//! too many. OpenTelemetry metrics, by function name:
//! `dftrace.udf.duration` (seconds per call, one point per query),
//! `dftrace.udf.rows`, `dftrace.udf.errors`.
//!
//! Not covered: aggregate and window functions; functions registered after
//! the session is built (`ctx.register_udf`): register
//! `ObservedScalar::wrap(&udf)` instead to observe one.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod counters;
mod observer;
mod scalar;

pub use config::UdfConfig;
pub use counters::{FunctionFigures, query_functions};
pub use observer::{
    UDF_CALLS, UDF_ERRORS, UDF_KIND, UDF_NAME, UDF_PARAMS, UDF_ROWS, UDF_TIME_NS, UDF_VERSION,
};
pub use scalar::ObservedScalar;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::registry::FunctionRegistry;
use dftrace_registry::{Plugin, PluginContext, Stage};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, OnceLock};

/// The names of DataFusion's built-in scalar functions (and their
/// aliases): what a session with the default features has.
static BUILTIN: LazyLock<HashSet<String>> = LazyLock::new(|| {
    SessionStateBuilder::new()
        .with_default_features()
        .build()
        .scalar_functions()
        .keys()
        .cloned()
        .collect()
});

/// Whether `name` is one of DataFusion's built-in scalar functions.
pub fn is_builtin(name: &str) -> bool {
    BUILTIN.contains(name)
}

/// Wraps `state`'s scalar functions: the host's, and the built-in ones
/// with `include_builtin`.
pub fn observe_functions(
    mut state: SessionState,
    include_builtin: bool,
) -> datafusion::error::Result<SessionState> {
    // A function is listed under its name and each alias: wrap it once.
    let functions: Vec<_> = state
        .scalar_functions()
        .iter()
        .filter(|(key, function)| *key == function.name())
        .filter(|(key, _)| include_builtin || !is_builtin(key))
        .map(|(_, function)| Arc::clone(function))
        .collect();
    for function in functions {
        state.register_udf(Arc::new(ObservedScalar::wrap(&function)))?;
    }
    Ok(state)
}

fn on_state(
    state: SessionState,
    context: &mut PluginContext<'_>,
) -> datafusion::error::Result<SessionState> {
    let config: UdfConfig = context.section()?;
    if !config.enabled {
        return Ok(state);
    }
    let state = observe_functions(state, config.include_builtin)?;
    context
        .services()
        .add_query_observer(Arc::new(observer::FunctionObserver {
            versions: config.versions,
            otel_metrics: config.otel_metrics,
            instruments: OnceLock::new(),
        }));
    Ok(state)
}

dftrace_registry::inventory::submit! {
    Plugin::new::<UdfConfig>(Stage::Observation).on_state(on_state)
}
