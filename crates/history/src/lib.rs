//! `dftrace-history`: a DataFusion session's recent queries, their
//! operators, and past trace files, as tables you query in SQL.
//!
//! With `history.enabled` (on in the traced `datafusion-cli`, off by default
//! elsewhere), the `history` plugin keeps the last `history.max_queries`
//! traced queries of a session in memory (and no more than
//! `history.max_bytes`), and registers three tables in the session's
//! default catalog, schema `dftrace`:
//!
//! - `dftrace.queries`: one row per kept query (trace id, run id,
//!   fingerprint, the SQL only with `rules.record_sql`, start, duration,
//!   outcome and error kind, rows, bytes scanned, spills, storage requests
//!   and bytes, operator count, the slowest operator by its own time);
//! - `dftrace.operators`: one row per operator of a kept query, with the
//!   figures of its deferred operator span (`dftrace-rules`): the plan tree
//!   as `operator_id` / `parent_id` (numbered across the query's plans;
//!   join a query's rows on `run_id`, which is the query's own, while a
//!   trace can hold several queries), self time, wall interval, rows,
//!   estimated rows, the spread over partitions, and every integer metric in
//!   a `map` column;
//! - `dftrace.spans`: one row per span of the OTLP-JSON-lines trace files
//!   under `history.spans_path` (the file sink's directory by default; a
//!   file or a glob too), read as a stream;
//! - `dftrace.running`: one row per query in flight (trace id, run id,
//!   fingerprint, start, elapsed, phase, output rows so far, peak memory so
//!   far with `dftrace-memory`), and `dftrace.running_operators`: each
//!   running query's operators that have run, numbered as in
//!   `dftrace.operators`, with rows and batches so far and partitions done
//!   of total. A query leaves them once it is in `dftrace.queries`.
//!
//! A query that reads `dftrace.queries` or `dftrace.operators` is not kept
//! itself. With `history.operator_metrics`, each kept operator also feeds
//! two OpenTelemetry instruments by operator name:
//! `dftrace.operator.self_time` (a histogram, seconds) and
//! `dftrace.operator.output_rows` (a counter).
//!
//! ```sql
//! SELECT trace_id, fingerprint, duration_ns / 1e6 AS ms, output_rows
//! FROM dftrace.queries ORDER BY duration_ns DESC LIMIT 5;
//! ```
//!
//! # Feature flags
//!
//! - `storage` (default): storage requests and bytes per query from
//!   `dftrace-object-store-registry`.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod kept;
mod observer;
mod running;
mod snapshot;
mod spans;
mod tables;

pub use config::HistoryConfig;
pub use kept::{KeptQuery, QueryHistory};
pub use spans::{SkippedLine, SpansTable};

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::execution::session_state::SessionState;
use dftrace_registry::{Plugin, PluginContext, RunningQueries, Stage};
use std::sync::Arc;

/// The schema the tables are registered in.
pub const SCHEMA: &str = "dftrace";
/// The table of kept queries.
pub const QUERIES_TABLE: &str = "queries";
/// The table of kept queries' operators.
pub const OPERATORS_TABLE: &str = "operators";
/// The table over trace files.
pub const SPANS_TABLE: &str = "spans";
/// The table of queries in flight.
pub const RUNNING_TABLE: &str = "running";
/// The table of the operators of queries in flight.
pub const RUNNING_OPERATORS_TABLE: &str = "running_operators";

/// Registers `dftrace.queries`, `dftrace.operators` and `dftrace.spans` in
/// `state`'s default catalog, over `history` and the trace files at
/// `spans_path`. The plugin calls this; a host without the registry can too
/// (and feed `history` with [`QueryHistory::keep`]).
pub fn register_tables(
    state: &SessionState,
    history: &Arc<QueryHistory>,
    spans_path: &str,
) -> datafusion::error::Result<()> {
    let options = state.config().options();
    let catalog_name = &options.catalog.default_catalog;
    let catalog = state.catalog_list().catalog(catalog_name).ok_or_else(|| {
        datafusion::error::DataFusionError::Plan(format!(
            "dftrace-history: the default catalog `{catalog_name}` does not exist"
        ))
    })?;
    let schema: Arc<dyn SchemaProvider> = match catalog.schema(SCHEMA) {
        Some(schema) => schema,
        None => {
            let schema: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
            catalog.register_schema(SCHEMA, Arc::clone(&schema))?;
            schema
        }
    };
    schema.register_table(
        QUERIES_TABLE.to_owned(),
        Arc::new(tables::queries_table(Arc::clone(history))),
    )?;
    schema.register_table(
        OPERATORS_TABLE.to_owned(),
        Arc::new(tables::operators_table(Arc::clone(history))),
    )?;
    schema.register_table(
        SPANS_TABLE.to_owned(),
        Arc::new(SpansTable::new(spans_path)),
    )?;
    Ok(())
}

/// Registers `dftrace.running` and `dftrace.running_operators` over
/// `running` in `state`'s default catalog (after [`register_tables`], which
/// makes the schema).
pub fn register_running_tables(
    state: &SessionState,
    running: &Arc<RunningQueries>,
) -> datafusion::error::Result<()> {
    let options = state.config().options();
    let schema = state
        .catalog_list()
        .catalog(&options.catalog.default_catalog)
        .and_then(|catalog| catalog.schema(SCHEMA))
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(
                "dftrace-history: register the history's tables first".to_owned(),
            )
        })?;
    schema.register_table(
        RUNNING_TABLE.to_owned(),
        Arc::new(running::running_table(Arc::clone(running))),
    )?;
    schema.register_table(
        RUNNING_OPERATORS_TABLE.to_owned(),
        Arc::new(running::running_operators_table(Arc::clone(running))),
    )?;
    Ok(())
}

fn on_state(
    state: SessionState,
    context: &mut PluginContext<'_>,
) -> datafusion::error::Result<SessionState> {
    let config: HistoryConfig = context.section()?;
    if !config.enabled {
        return Ok(state);
    }
    let history = Arc::new(QueryHistory::new(config.max_queries, config.max_bytes));
    register_tables(&state, &history, &config.spans_path)?;
    context
        .services()
        .add_query_observer(Arc::new(observer::HistoryObserver::new(
            Arc::clone(&history),
            config.operator_metrics,
        )));
    // The host reads the history through the session's services too.
    context.services().insert(history);
    // dftrace-rules lists the session's queries in flight here.
    let running = Arc::new(RunningQueries::default());
    register_running_tables(&state, &running)?;
    context.services().insert(running);
    Ok(state)
}

dftrace_registry::inventory::submit! {
    Plugin::new::<HistoryConfig>(Stage::Observation).on_state(on_state)
}

#[cfg(test)]
mod tests;
