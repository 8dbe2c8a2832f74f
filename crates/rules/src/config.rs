//! The `[rules]` config section.

use dftrace_registry::{Preset, Section, SpanLevel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How much of the planner is traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleMode {
    /// No planner spans (the statement's root still opens before the
    /// analyzer).
    Disabled,
    /// One span per phase: `analyze_logical_plan`, `optimize_logical_plan`
    /// (one per pass), `create_physical_plan`, `optimize_physical_plan`.
    PhaseOnly,
    /// Phase spans (with the rules run and their time) plus one span per
    /// rule application that changed the plan, with its diff
    /// (`rules.plan_diff`).
    Changed,
    /// Phase spans plus one span per analyzer, optimizer and physical
    /// optimizer rule application, changed or not.
    Full,
}

/// How operator spans are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperatorSpans {
    /// Built when the query ends, from the executed plan: one span per
    /// operator with typed metrics, its own time, per-partition spread and
    /// estimated rows. While the query runs, each operator only notes when
    /// its partition streams start and end (no span is entered per poll).
    Deferred,
    /// `datafusion-tracing`'s `InstrumentedExec`: spans open while the
    /// operator runs (storage spans nest under them), entered on every poll,
    /// with upstream's metric fields as display strings.
    Live,
    /// Built when the query ends, like `deferred`, with only the plan's top
    /// wrapped, so nothing sits between operators while they run: the
    /// spans below the top come from the executed plan's own metrics. Each
    /// operator's interval is the start and end its metrics record (from
    /// when its streams were made, within its parent's; its parent's whole
    /// interval where it records none, as for a node that never ran);
    /// previews, errors, per-operator memory and `dftrace.running_operators`
    /// figures are the top operator's only; a recursive query's recursive
    /// term shows as planned. What datafusion-python sessions get by
    /// default, where each wrapper between operators is a crossing of the
    /// FFI.
    MetricsOnly,
}

/// Which queries get operator spans. Deferred spans are built after the
/// query, so the choice can use its duration and outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperatorSpansWhen {
    /// Every query.
    Always,
    /// Queries that took at least `rules.slow_query_ms`, and failed ones.
    Slow,
    /// Failed queries only.
    Failed,
}

/// Which of an operator's metrics its deferred span carries, by DataFusion's
/// own `MetricType` (what `EXPLAIN ANALYZE` shows at each
/// `datafusion.explain.analyze_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsLevel {
    /// The summary metrics: rows, batches, bytes, compute time, spills.
    Summary,
    /// Every metric, the developer-level ones too (file pruning, timers of
    /// each phase, ...).
    Dev,
}

/// Operator and planner instrumentation settings: the `[rules]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// One span per physical operator (the `Instrument` rule). On in every
    /// preset.
    pub exec_spans: bool,
    /// How operator spans are made: `deferred` (built from the executed
    /// plan when the query ends; the default), `metrics-only` (only the top
    /// wrapped, the spans below from the plan's own metrics) or `live`
    /// (`datafusion-tracing`'s spans, open while the operator runs).
    pub operator_spans: OperatorSpans,
    /// Which queries get operator spans (not `live`): `always`, `slow`
    /// (at least `slow_query_ms`, or failed) or `failed`. The root span, the
    /// planner spans and the metrics summary are recorded for every query.
    pub operator_spans_when: OperatorSpansWhen,
    /// The duration from which a query counts as slow, in milliseconds.
    pub slow_query_ms: u64,
    /// The level of the operator, planner and root query spans.
    pub span_level: SpanLevel,
    /// Record DataFusion's metrics on operator spans
    /// (`datafusion.metrics.*`).
    pub record_metrics: bool,
    /// Which metrics deferred operator spans carry: `summary` (rows, bytes,
    /// compute time, spills) or `dev` (every metric the operator reports).
    pub metrics_level: MetricsLevel,
    /// Put DataFusion's row estimate on deferred operator spans
    /// (`dftrace.operator.estimated_rows`); computing it walks the plan's
    /// statistics once per query.
    pub estimated_rows: bool,
    /// Rows kept per operator for the `datafusion.preview` attribute; 0 turns
    /// previews off.
    pub preview_limit: usize,
    /// Allow previews without a redacting formatter. Without it, a
    /// `preview_limit` above 0 needs `dftrace-preview-redaction` linked or a
    /// preview function passed in code.
    pub allow_unredacted_preview: bool,
    /// Host attributes set on every operator span and on the root query span
    /// (e.g. `env`, `region`, `service.version`, `git.commit`).
    pub custom_fields: BTreeMap<String, String>,
    /// Planner tracing mode.
    pub rule_mode: RuleMode,
    /// Record a diff of the plan on each planner span that changed it
    /// (`datafusion.plan_diff`).
    pub plan_diff: bool,
    /// Put the raw SQL text on the root query span (`db.query.text`). Off by
    /// default: SQL can carry literal values; the fingerprint never does.
    pub record_sql: bool,
    /// Keep the query's literal values where plan text shows them (operator
    /// descriptions, plan diffs, the planner's plans), in error messages
    /// and in previews of columns computed from them. Off by default: they
    /// show as `?`. `record_sql` is the other way a query's values can be
    /// exported.
    pub record_literals: bool,
}

impl Section for RulesConfig {
    const NAME: &'static str = "rules";

    fn for_preset(preset: Preset) -> Self {
        // production-lean keeps what ranks operators (summary metrics, self
        // time) and leaves out what costs most per query: dev metrics and
        // the statistics walk behind the row estimates.
        let (rule_mode, plan_diff, preview_limit, metrics_level, estimated_rows) = match preset {
            // Every rule application that changed the plan, with its diff;
            // the others counted on their phase (`full` adds a span for each
            // of them too, at a cost per rule and no new plan text).
            Preset::Maximal => (RuleMode::Changed, true, 5, MetricsLevel::Dev, true),
            Preset::MaximalNoData => (RuleMode::Changed, true, 0, MetricsLevel::Dev, true),
            Preset::ProductionLean => (RuleMode::PhaseOnly, false, 0, MetricsLevel::Summary, false),
        };
        RulesConfig {
            exec_spans: true,
            operator_spans: OperatorSpans::Deferred,
            operator_spans_when: OperatorSpansWhen::Always,
            slow_query_ms: 1000,
            span_level: SpanLevel::Info,
            record_metrics: true,
            metrics_level,
            estimated_rows,
            preview_limit,
            allow_unredacted_preview: false,
            custom_fields: BTreeMap::new(),
            rule_mode,
            plan_diff,
            record_sql: false,
            record_literals: false,
        }
    }
}

impl RulesConfig {
    /// Refuses combinations that cannot work, naming what to change.
    pub(crate) fn check(&self) -> Result<(), crate::error::RulesError> {
        if self.operator_spans == OperatorSpans::Live
            && self.operator_spans_when != OperatorSpansWhen::Always
        {
            return Err(crate::RulesError::LiveSpansAlways {
                when: self.operator_spans_when,
            });
        }
        if self.operator_spans == OperatorSpans::Live && !self.record_literals {
            return Err(crate::RulesError::LiveSpansRecordLiterals);
        }
        Ok(())
    }
}

impl Default for RulesConfig {
    /// The defaults of the default preset.
    fn default() -> Self {
        Self::for_preset(Preset::default())
    }
}
