//! Planner instrumentation: phase and rule spans, with optional plan diffs.

use crate::config::{RuleMode, RulesConfig};
use datafusion::execution::session_state::SessionState;
use datafusion_tracing::RuleInstrumentationOptions;
use dftrace_registry::SpanLevel;

pub use dftrace_registry::keys::PLANNER_TARGET;

/// Wraps the analyzer, logical optimizer and physical optimizer rules of
/// `state` as `config.rule_mode` asks (`disabled` returns `state` unchanged).
///
/// Apply it after every rule is in place, including the `Instrument` rule:
/// the registry runs it at the state stage.
pub fn instrument_planner(state: SessionState, config: &RulesConfig) -> SessionState {
    let options = match config.rule_mode {
        RuleMode::Disabled => return state,
        RuleMode::PhaseOnly => RuleInstrumentationOptions::phase_only(),
        RuleMode::Full => RuleInstrumentationOptions::full(),
    };
    let options = if config.plan_diff {
        options.with_plan_diff()
    } else {
        options
    };
    // `tracing` needs the level as a constant at each span callsite.
    match config.span_level {
        SpanLevel::Trace => datafusion_tracing::instrument_rules_with_trace_spans!(
            target: PLANNER_TARGET, options: options, state: state
        ),
        SpanLevel::Debug => datafusion_tracing::instrument_rules_with_debug_spans!(
            target: PLANNER_TARGET, options: options, state: state
        ),
        SpanLevel::Info => datafusion_tracing::instrument_rules_with_info_spans!(
            target: PLANNER_TARGET, options: options, state: state
        ),
        SpanLevel::Warn => datafusion_tracing::instrument_rules_with_warn_spans!(
            target: PLANNER_TARGET, options: options, state: state
        ),
        SpanLevel::Error => datafusion_tracing::instrument_rules_with_error_spans!(
            target: PLANNER_TARGET, options: options, state: state
        ),
    }
}
