//! Planner instrumentation: the statement's root span opened before the
//! analyzer runs, one span per planner phase, and spans for the rules.
//!
//! DataFusion runs a statement's analyzer and logical optimizer before its
//! query planner, and offers no hook around the three: the first analyzer
//! rule is the first code of the statement that dftrace can run. So the
//! analyzer starts with dftrace's own rule, which opens the statement's
//! root span (`dftrace.query`) when none encloses the planning (a host that
//! ran `ctx.sql(..).collect()`), and the session's query planner is
//! wrapped to take that root over: the analyzer, every optimizer pass,
//! physical planning and optimization, execution and storage requests are
//! one trace, and the sampler decides once, at the root. The statement
//! being planned is kept per thread ([`statement`]): DataFusion runs each
//! phase's rules one after the other on the calling thread.
//!
//! Each rule is wrapped so that its time and whether it changed the plan
//! are known; what becomes of that is `rules.rule_mode`:
//!
//! - `phase-only`: one span per phase, carrying how many rules ran and the
//!   time they took;
//! - `changed`: also one span per rule application that changed the plan,
//!   with its diff (`rules.plan_diff`), the others counted on their phase
//!   (the rules run, their time);
//! - `full`: one span per rule application, changed or not.
//!
//! Rules are timed one by one only for a statement whose spans are
//! recorded (a sampled trace) in the `changed` and `full` modes; otherwise
//! the wrappers pass through, and DataFusion walks the plan for each rule
//! as it would without dftrace.
//!
//! Every plan text a span carries is masked with the query's literal values
//! before it is recorded (see `dftrace_registry::literals`).

mod options;
mod query_planner;
mod rules;
mod statement;

pub(crate) use query_planner::{QueryRootPlanner, TracedTableFactory};
pub(crate) use statement::take_planned_root;

use crate::config::RulesConfig;
use datafusion::catalog::TableProviderFactory;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use dftrace_registry::DftraceSession;
use options::PlannerOptions;
use std::sync::Arc;

/// `state` with a root query span for every statement whatever API the host
/// runs it through, opened before the analyzer, and with the analyzer,
/// logical optimizer and physical optimizer rules wrapped as
/// `config.rule_mode` asks (`disabled`: the root, no planner spans). Its
/// table factories (`CREATE EXTERNAL TABLE`) open a root of their own.
///
/// Apply it after every rule is in place, including the `Instrument` rule:
/// the registry runs it at the state stage.
pub fn instrument_planner(state: SessionState, config: &RulesConfig) -> SessionState {
    let options = Arc::new(PlannerOptions::new(
        config,
        state.config().get_extension::<DftraceSession>(),
    ));
    let analyzers = rules::analyzer_rules(state.analyzer().rules.clone(), &options);
    let optimizers = rules::optimizer_rules(Vec::from(state.optimizers()));
    let physical = rules::physical_rules(Vec::from(state.physical_optimizers()), &options);
    let planner = Arc::new(QueryRootPlanner::new(
        Arc::clone(state.query_planner()),
        Arc::clone(&options),
    ));
    let factories = state
        .table_factories()
        .iter()
        .map(|(name, factory)| {
            let traced: Arc<dyn TableProviderFactory> =
                Arc::new(TracedTableFactory::new(Arc::clone(factory)));
            (name.clone(), traced)
        })
        .collect();
    let mut builder = SessionStateBuilder::new_from_existing(state)
        .with_optimizer_rules(optimizers)
        .with_physical_optimizer_rules(physical)
        .with_query_planner(planner)
        .with_table_factories(factories);
    // Replacing only the rules keeps the analyzer's function rewrites.
    builder.analyzer().get_or_insert_default().rules = analyzers;
    builder.build()
}
