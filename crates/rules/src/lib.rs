//! `dftrace-rules`: operator and planner instrumentation for DataFusion, from
//! dftrace's `[rules]` config section, under one root query span.
//!
//! - [`exec_rule`]: the `datafusion-tracing` `Instrument` rule, built from a
//!   [`RulesConfig`]: span level, metrics, previews (never raw by accident)
//!   and host custom fields on every operator span.
//! - [`instrument_planner`]: one root query span (`dftrace.query`) per
//!   statement, whatever API runs it, opened before the analyzer; phase
//!   and rule spans with optional plan diffs.
//! - [`run_sql`] / [`run_dataframe`] / [`QuerySpan`]: the root query span
//!   with a run id, a literal-free SQL fingerprint, host attributes, the
//!   outcome, and an optional W3C `traceparent` parent.
//!
//! No literal value of a query and no value of its data reaches a span
//! unless the host asks (`rules.record_literals`, previews of allowed
//! columns): every text dftrace records is masked before it is recorded,
//! so this holds whatever subscriber and exporter the host runs.
//!
//! With the default `registry` feature the crate registers the `rules` plugin,
//! so a host that applies dftrace through `dftrace-registry` gets all of it:
//!
//! ```
//! use datafusion::execution::SessionStateBuilder;
//! use datafusion::prelude::SessionContext;
//! use dftrace_registry::{DftraceConfig, Preset, RegistryStateBuilderExt};
//! use dftrace_rules::{QueryOptions, run_sql};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = DftraceConfig::builder().preset(Preset::MaximalNoData).build()?;
//! let state = SessionStateBuilder::new()
//!     .with_default_features()
//!     .with_dftrace(&config)?
//!     .build_dftrace()?;
//! let rules: Vec<_> = state.physical_optimizers().iter().map(|r| r.name()).collect();
//! assert!(rules.contains(&"Instrument"));
//!
//! let ctx = SessionContext::new_with_state(state);
//! let query = run_sql(&ctx, "SELECT 1 + 1 AS two", &QueryOptions::new()).await?;
//! assert_eq!(query.batches[0].num_rows(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! - `registry` (default): register the `rules` plugin with `dftrace-registry`.
//!
//! # Module map
//!
//! Imports run one way, from the entry points down to the leaves:
//!
//! 1. Leaves: `config` (the `[rules]` section), `error`, `literals` (the
//!    query's literal set), `trace_context` (W3C `traceparent`), `filter`,
//!    `propagation` (spawned tasks follow their span), `preview` (the
//!    preview formatters), `span_helpers` (span times, tracers, enclosing
//!    spans), `ended`, `overrides`.
//! 2. `operators/`: the recording wrapper around each operator (`wrapper`,
//!    `record`), preview lineage (`lineage`), the operator spans built when
//!    a query ends (`spans`) and DataFusion's metrics as attributes
//!    (`metric_attributes`). It knows nothing about queries: the root at a
//!    plan's top is a `PlanRoot` the query layer implements.
//! 3. The query: `query` (the root span, `run_sql`), `query_end` (its end,
//!    off the query's path), `root` (a plan's top, running its partitions
//!    inside the root).
//! 4. Entry points: `exec` (the exec rule), `live` (datafusion-tracing's
//!    live spans), `planner/` (the root before the analyzer, phase and
//!    rule spans), and the `rules` plugin below.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod ended;
mod error;
mod exec;
mod filter;
mod literals;
mod live;
mod operators;
mod overrides;
mod planner;
mod preview;
mod propagation;
mod query;
mod query_end;
mod root;
mod span_helpers;
mod trace_context;

pub use config::{MetricsLevel, OperatorSpans, OperatorSpansWhen, RuleMode, RulesConfig};
pub use ended::QueryEnded;
pub use error::RulesError;
pub use exec::exec_rule;
pub use overrides::RulesOverrides;
pub use planner::instrument_planner;
pub use preview::PREVIEW_FAILED;
pub use query::{
    QueryOptions, QueryProgress, QuerySpan, TracedQuery, run_dataframe, run_sql, sql_fingerprint,
};
pub use trace_context::{TRACEPARENT, TRACESTATE, parse_trace_context};

#[cfg(feature = "registry")]
mod plugin {
    use crate::{RulesConfig, exec_rule, instrument_planner};
    use datafusion::execution::SessionStateBuilder;
    use datafusion::execution::session_state::SessionState;
    use dftrace_registry::{Plugin, PluginContext, PreviewFormatter, Stage};

    fn on_builder(
        builder: SessionStateBuilder,
        context: &mut PluginContext<'_>,
    ) -> datafusion::error::Result<SessionStateBuilder> {
        let config: RulesConfig = context.section()?;
        // Resolved once here, so each query's root span reads it for free.
        context
            .services()
            .insert(std::sync::Arc::new(config.clone()));
        if !config.exec_spans {
            return Ok(builder);
        }
        let preview = context
            .services()
            .get::<PreviewFormatter>()
            .map(|formatter| (*formatter).clone());
        let rule = exec_rule(&config, preview)?;
        Ok(builder.with_physical_optimizer_rule(rule))
    }

    fn on_state(
        state: SessionState,
        context: &mut PluginContext<'_>,
    ) -> datafusion::error::Result<SessionState> {
        let config: RulesConfig = context.section()?;
        crate::filter::check_spans_pass(config.span_level)?;
        Ok(instrument_planner(state, &config))
    }

    dftrace_registry::inventory::submit! {
        Plugin::new::<RulesConfig>(Stage::Instrumentation).on_builder(on_builder).on_state(on_state)
    }
}
