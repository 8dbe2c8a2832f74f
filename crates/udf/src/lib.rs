//! `dftrace-udf`: a DataFusion session's scalar, aggregate and window
//! functions observed per query.
//!
//! With `udf.enabled` (every preset), the `udf` plugin wraps the session's
//! functions when the session is built: the host's own always (a host
//! function under a built-in's name too), DataFusion's built-in ones only
//! with `udf.include_builtin`. The wrappers (`ObservedScalar`,
//! `ObservedAggregate`, `ObservedWindow`) pass every method through
//! (name, aliases, signature, return type, simplification, coercion,
//! ordering, reversal, statistics, documentation: `SHOW FUNCTIONS` and
//! `information_schema` are unchanged) and time the calls that do the
//! work: a scalar function's evaluation (one per batch), an aggregate's
//! accumulator calls (`update_batch`, `merge_batch`, `retract_batch`,
//! `state`, `evaluate`, and the groups accumulator's `convert_to_state`),
//! a window function's `evaluate`, `evaluate_all` and
//! `evaluate_all_with_rank`. Left unwrapped, because DataFusion recognises
//! them by their concrete type and a wrapper would hide it: async scalar
//! functions (`AsyncScalarUDF`) and the built-ins `get_field`,
//! `named_struct`, `struct`, `input_file_name`, `file_row_index`, `log` and
//! `power`. Each query records, per function, its calls, input rows, time
//! inside the function, errors and the argument types it was called with
//! (never values), kept in the query's root span like the storage
//! counters.
//!
//! When the query ends, each function that ran gets one span, named for the
//! function, with `udf.name`, `udf.kind`, `udf.calls`, `udf.rows`,
//! `udf.time_ns`, `udf.errors`, `udf.params` (types), `udf.version` (from
//! `[udf.versions]`) and `udf.operator` (the operators that called it, as
//! `name#index`), from the first call's start to the last call's end — one
//! span per evaluation would be one per batch, too many. Its parent is the
//! operator span of the operator that called it when exactly one did (an
//! aggregate usually runs in two: partial and final), else the root span. The same figures are in the metrics summary (`functions`).
//! OpenTelemetry metrics, by function name and kind: `dftrace.udf.duration`
//! (seconds per call, one point per query), `dftrace.udf.rows`,
//! `dftrace.udf.errors`.
//!
//! The operator is known from dftrace-rules' operator streams, which mark
//! the thread's current operator around each poll
//! ([`dftrace_registry::current_operator`]); with live operator spans
//! (`rules.operator_spans = "live"`) or none built, it is not, and the span
//! hangs under the root without `udf.operator`.
//!
//! Not covered: a function inside an expression that DataFusion's simplifier replaced
//! (`simplify` returns the inner function's rewrite); functions registered
//! after the session is built (`ctx.register_udf`): register
//! [`observe_scalar`]`(&udf)` (likewise [`observe_aggregate`],
//! [`observe_window`]) instead to observe one.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
mod config;
mod counters;
mod observer;
mod scalar;
mod window;

use aggregate::ObservedAggregate;
pub use config::UdfConfig;
pub use counters::{FunctionFigures, FunctionId, FunctionKind, query_functions};
pub use observer::{
    UDF_CALLS, UDF_ERRORS, UDF_KIND, UDF_NAME, UDF_OPERATOR, UDF_PARAMS, UDF_ROWS, UDF_TIME_NS,
    UDF_VERSION,
};
use scalar::ObservedScalar;
use window::ObservedWindow;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::registry::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use dftrace_registry::{Plugin, PluginContext, Stage};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};

/// DataFusion's built-in functions (by name and alias) and the type of
/// each one's implementation: what a session with the default features
/// has.
#[derive(Debug)]
struct Builtins {
    scalar: HashMap<String, TypeId>,
    aggregate: HashMap<String, TypeId>,
    window: HashMap<String, TypeId>,
}

static BUILTIN: LazyLock<Builtins> = LazyLock::new(|| {
    let state = SessionStateBuilder::new().with_default_features().build();
    Builtins {
        scalar: implementation_types(state.scalar_functions(), |f| f.inner().as_ref()),
        aggregate: implementation_types(state.aggregate_functions(), |f| f.inner().as_ref()),
        window: implementation_types(state.window_functions(), |f| f.inner().as_ref()),
    }
});

/// Each entry's implementation type, by the name (or alias) it is under.
fn implementation_types<F>(
    functions: &HashMap<String, Arc<F>>,
    implementation: impl Fn(&F) -> &dyn Any,
) -> HashMap<String, TypeId> {
    functions
        .iter()
        .map(|(name, function)| (name.clone(), type_of(implementation(function))))
        .collect()
}

/// Each function of a session's map once: a function is listed under its
/// name and under each alias.
fn each_once<'a, F>(
    functions: &'a HashMap<String, Arc<F>>,
    name: impl Fn(&F) -> &str + 'a,
) -> impl Iterator<Item = &'a Arc<F>> + 'a {
    functions
        .iter()
        .filter(move |(key, function)| key.as_str() == name(function))
        .map(|(_, function)| function)
}

fn type_of(implementation: &dyn Any) -> TypeId {
    implementation.type_id()
}

/// Built-ins DataFusion's planner, optimizer or parquet reader recognise by
/// their implementation's type (`try_downcast_func`, `inner().is::<T>()`).
const RECOGNISED_BY_TYPE: &[&str] = &[
    "get_field",
    "named_struct",
    "struct",
    "input_file_name",
    "file_row_index",
    "log",
    "power",
];

/// `function`, observed: register the result in place of a function
/// registered after the session was built. A function already observed,
/// and one the plugin leaves alone ([`can_observe`]: async functions, the
/// built-ins DataFusion recognises by type), is returned as it is.
pub fn observe_scalar(function: &ScalarUDF) -> ScalarUDF {
    ObservedScalar::wrap(function)
}

/// `function`, observed, as [`observe_scalar`] does for scalar functions.
pub fn observe_aggregate(function: &AggregateUDF) -> AggregateUDF {
    ObservedAggregate::wrap(function)
}

/// `function`, observed, as [`observe_scalar`] does for scalar functions.
pub fn observe_window(function: &WindowUDF) -> WindowUDF {
    ObservedWindow::wrap(function)
}

/// Whether `function` is one of DataFusion's built-in scalar functions (its
/// name and its implementation's type are a built-in's: a host function
/// that takes a built-in's name is not).
pub fn is_builtin(function: &ScalarUDF) -> bool {
    BUILTIN.scalar.get(function.name()) == Some(&type_of(function.inner().as_ref()))
}

/// Whether `function` is one of DataFusion's built-in aggregate functions.
pub fn is_builtin_aggregate(function: &AggregateUDF) -> bool {
    BUILTIN.aggregate.get(function.name()) == Some(&type_of(function.inner().as_ref()))
}

/// Whether `function` is one of DataFusion's built-in window functions.
pub fn is_builtin_window(function: &WindowUDF) -> bool {
    BUILTIN.window.get(function.name()) == Some(&type_of(function.inner().as_ref()))
}

/// Whether the plugin can wrap `function` without changing how DataFusion
/// treats it.
pub fn can_observe(function: &ScalarUDF) -> bool {
    function.as_async().is_none()
        && !(is_builtin(function) && RECOGNISED_BY_TYPE.contains(&function.name()))
}

/// Wraps `state`'s scalar, aggregate and window functions: the host's, and
/// the built-in ones with `include_builtin`.
pub fn observe_functions(
    mut state: SessionState,
    include_builtin: bool,
) -> datafusion::error::Result<SessionState> {
    let scalars: Vec<_> = each_once(state.scalar_functions(), ScalarUDF::name)
        .filter(|function| include_builtin || !is_builtin(function))
        .filter(|function| can_observe(function))
        .cloned()
        .collect();
    for function in scalars {
        state.register_udf(Arc::new(ObservedScalar::wrap(&function)))?;
    }
    let aggregates: Vec<_> = each_once(state.aggregate_functions(), AggregateUDF::name)
        .filter(|function| include_builtin || !is_builtin_aggregate(function))
        .cloned()
        .collect();
    for function in aggregates {
        state.register_udaf(Arc::new(ObservedAggregate::wrap(&function)))?;
    }
    let windows: Vec<_> = each_once(state.window_functions(), WindowUDF::name)
        .filter(|function| include_builtin || !is_builtin_window(function))
        .cloned()
        .collect();
    for function in windows {
        state.register_udwf(Arc::new(ObservedWindow::wrap(&function)))?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{ObservedAggregate, ObservedScalar, ObservedWindow, is_builtin, observe_functions};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    #[test]
    fn built_ins_recognised_by_type_stay_unwrapped() {
        let state = SessionStateBuilder::new().with_default_features().build();
        let state = observe_functions(state, true).unwrap();
        let functions = state.scalar_functions();
        assert!(functions["upper"].inner().is::<ObservedScalar>());
        for name in [
            "get_field",
            "named_struct",
            "input_file_name",
            "log",
            "power",
        ] {
            assert!(!functions[name].inner().is::<ObservedScalar>(), "{name}");
        }
    }

    #[tokio::test]
    async fn built_in_aggregates_and_windows_wrapped_give_the_same_results() {
        let sql = "SELECT k, count(*) AS n, sum(v) AS s, min(v) AS lo, \
                   first_value(v ORDER BY v) AS f, row_number() OVER (ORDER BY k) AS r \
                   FROM (VALUES (1, 10), (1, 20), (2, 30)) AS t(k, v) GROUP BY k ORDER BY k";
        let plain = SessionStateBuilder::new().with_default_features().build();
        let observed = observe_functions(plain.clone(), true).unwrap();
        for name in ["count", "sum", "min", "first_value"] {
            assert!(
                observed.aggregate_functions()[name]
                    .inner()
                    .is::<ObservedAggregate>(),
                "{name}"
            );
        }
        assert!(
            observed.window_functions()["row_number"]
                .inner()
                .is::<ObservedWindow>()
        );
        let run = |state| async move {
            let batches = SessionContext::new_with_state(state)
                .sql(sql)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        };
        assert_eq!(run(observed).await, run(plain).await);
    }

    #[test]
    fn a_host_function_under_a_built_in_name_is_the_hosts() {
        let host_upper = create_udf(
            "upper",
            vec![DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(|args: &[ColumnarValue]| Ok(args[0].clone())),
        );
        assert!(!is_builtin(&host_upper));
        let state = SessionStateBuilder::new().with_default_features().build();
        assert!(is_builtin(&state.scalar_functions()["upper"]));
        let mut builder = SessionStateBuilder::new().with_default_features();
        builder
            .scalar_functions()
            .get_or_insert_with(Vec::new)
            .push(Arc::new(host_upper));
        let state = observe_functions(builder.build(), false).unwrap();
        assert!(
            state.scalar_functions()["upper"]
                .inner()
                .is::<ObservedScalar>()
        );
        assert!(
            !state.scalar_functions()["lower"]
                .inner()
                .is::<ObservedScalar>()
        );
    }
}
