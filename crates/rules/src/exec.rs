//! The execution instrumentation rule: one span per physical operator,
//! built from the executed plan (`deferred`, the default) or open while the
//! operator runs (`live`).

use crate::config::{OperatorSpans, RulesConfig};
use crate::error::RulesError;
use crate::operators::{DeferredOptions, DftraceExec, Role, wrap_operators, wrap_top_only};
use crate::query::trace_known_unsampled;
use crate::root::RootState;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use dftrace_registry::INSTRUMENT_RULE_NAME;
use dftrace_registry::PreviewFormatter;
use dftrace_registry::literals::QueryLiterals;
use std::sync::Arc;
use std::time::Duration;
use tracing::Span;

/// The execution instrumentation rule for `config`, named `Instrument`: add
/// it as the last physical optimizer rule (the registry does this for you).
///
/// With `rules.operator_spans = "deferred"` (the default) it wraps each node
/// in a thin recording node and, when the query's root span ends, builds
/// one span per operator from the executed plan; with `"metrics-only"` it
/// wraps only the plan's top and builds the same spans from the plan's own
/// metrics; with `"live"` it is `datafusion-tracing`'s `Instrument` rule.
///
/// `preview` formats `datafusion.preview` (`dftrace-preview-redaction`'s
/// `preview_formatter` redacts by column names and, for deferred spans, by
/// each column's sources in the plan). When it is `None` and
/// `config.preview_limit > 0`, this fails unless
/// `config.allow_unredacted_preview` is set (then Arrow's plain table
/// formatter is used).
///
/// ```
/// use dftrace_rules::{RulesConfig, exec_rule};
///
/// let rule = exec_rule(&RulesConfig::default(), None).expect("no previews by default");
/// assert_eq!(rule.name(), "Instrument");
///
/// let previews = RulesConfig { preview_limit: 5, ..RulesConfig::default() };
/// assert!(exec_rule(&previews, None).is_err(), "never raw by accident");
/// ```
pub fn exec_rule(
    config: &RulesConfig,
    preview: Option<PreviewFormatter>,
) -> Result<Arc<dyn PhysicalOptimizerRule + Send + Sync>, RulesError> {
    config.check()?;
    if config.preview_limit > 0 && preview.is_none() && !config.allow_unredacted_preview {
        return Err(RulesError::UnredactedPreview {
            limit: config.preview_limit,
        });
    }
    let preview = (config.preview_limit > 0)
        .then(|| crate::preview::guarded(preview.unwrap_or_else(crate::preview::plain_table)));
    match config.operator_spans {
        OperatorSpans::Deferred | OperatorSpans::MetricsOnly => {
            crate::propagation::follow_spawned_tasks();
            let options = DeferredOptions {
                record_literals: config.record_literals,
                level: config.span_level,
                record_metrics: config.record_metrics,
                metrics_level: config.metrics_level,
                estimated_rows: config.estimated_rows,
                preview: preview.map(|formatter| formatter.by_sources),
                custom_fields: config
                    .custom_fields
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
                when: config.operator_spans_when,
                slow: Duration::from_millis(config.slow_query_ms),
            };
            Ok(Arc::new(DeferredRule::new(
                options,
                config.preview_limit,
                config.operator_spans == OperatorSpans::MetricsOnly,
            )))
        }
        OperatorSpans::Live => Ok(crate::live::live_rule(
            config,
            preview.map(|formatter| formatter.by_name),
        )),
    }
}

/// The exec rule of the deferred modes: wraps every node (or, with
/// `metrics-only`, the plan's top), then hands the plan to the enclosing
/// root query span (or gives it a root of its own).
#[derive(Debug)]
pub(crate) struct DeferredRule {
    options: Arc<DeferredOptions>,
    preview_limit: usize,
    top_only: bool,
}

impl DeferredRule {
    pub(crate) fn new(options: DeferredOptions, preview_limit: usize, top_only: bool) -> Self {
        DeferredRule {
            options: Arc::new(options),
            preview_limit,
            top_only,
        }
    }
}

impl DeferredRule {
    /// `plan` with every node wrapped, its literals added to `literals`
    /// first and its descriptions masked with them.
    fn wrap(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        literals: &QueryLiterals,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::literals::add_physical(literals, &plan);
        if self.top_only {
            return Ok(wrap_top_only(
                plan,
                self.preview_limit,
                &self.options,
                literals,
            ));
        }
        wrap_operators(
            plan,
            self.preview_limit,
            Some(&self.options),
            None,
            literals,
        )
    }
}

impl PhysicalOptimizerRule for DeferredRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // An unsampled trace exports nothing: the plan runs unwrapped.
        let current = Span::current();
        if trace_known_unsampled(&current) || DftraceExec::of(plan.as_ref()).is_some() {
            return Ok(plan);
        }
        let inside = crate::span_helpers::inside_query();
        if !inside && plan.downcast_ref::<EmptyExec>().is_some() {
            // What a host that collects the empty result of a statement
            // `ctx.sql` already ran (DDL, `CREATE TABLE .. AS`) gets: it
            // runs nothing, and gets no trace.
            return Ok(plan);
        }
        if inside {
            let literals = crate::literals::current();
            return self.wrap(plan, &literals);
        }
        // No root encloses the planning. The planner instrumentation's root
        // (should a host have replaced dftrace's query planner) is taken
        // over; else the plan opens one when it runs.
        if let Some(planned) = crate::planner::take_planned_root()
            && let Some(query) = planned.root
        {
            let literals = Arc::clone(query.literals());
            let wrapped = self.wrap(plan, &literals)?;
            return Ok(crate::root::with_query_root(wrapped, query));
        }
        let literals = Arc::new(QueryLiterals::new(self.options.record_literals));
        let wrapped = self.wrap(plan, &literals)?;
        Ok(Arc::new(DftraceExec::new(
            wrapped,
            Role::QueryRoot(Arc::new(RootState::lazy(literals))),
        )))
    }

    fn name(&self) -> &str {
        INSTRUMENT_RULE_NAME
    }

    fn schema_check(&self) -> bool {
        // Wrapping never changes a schema; upstream's rule skips the check too.
        false
    }
}
