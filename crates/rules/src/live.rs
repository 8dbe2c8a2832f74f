//! Live operator spans (`rules.operator_spans = "live"`): upstream's
//! `InstrumentedExec`, through its own span macros (so its field list is
//! upstream's, never a copy that drifts). Under each of upstream's nodes
//! sits dftrace's recording node, which puts the host's custom fields on
//! the span upstream has entered around it, and an ERROR status on the
//! operator where an error started.

use crate::config::RulesConfig;
use crate::operators::{LiveFields, wrap_operators};
use crate::query::trace_known_unsampled;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion_tracing::InstrumentationOptions;
use dftrace_registry::keys::EXEC_TARGET;
use dftrace_registry::{PreviewFn, SpanLevel};
use std::sync::Arc;
use tracing::Span;

/// Upstream's `Instrument` rule at the configured level, with metrics and
/// previews as `config` says (`preview` is already guarded).
pub(crate) fn live_rule(
    config: &RulesConfig,
    preview: Option<Arc<PreviewFn>>,
) -> Arc<dyn PhysicalOptimizerRule + Send + Sync> {
    let mut options = InstrumentationOptions::builder()
        .record_metrics(config.record_metrics)
        .preview_limit(config.preview_limit);
    if let Some(preview) = preview {
        options = options.preview_fn(preview);
    }
    let options = options.build();
    // `tracing` needs the level as a constant at each span callsite.
    let inner = match config.span_level {
        SpanLevel::Trace => {
            datafusion_tracing::instrument_with_trace_spans!(target: EXEC_TARGET, options: options)
        }
        SpanLevel::Debug => {
            datafusion_tracing::instrument_with_debug_spans!(target: EXEC_TARGET, options: options)
        }
        SpanLevel::Info => {
            datafusion_tracing::instrument_with_info_spans!(target: EXEC_TARGET, options: options)
        }
        SpanLevel::Warn => {
            datafusion_tracing::instrument_with_warn_spans!(target: EXEC_TARGET, options: options)
        }
        SpanLevel::Error => {
            datafusion_tracing::instrument_with_error_spans!(target: EXEC_TARGET, options: options)
        }
    };
    let fields = Arc::new(LiveFields {
        record_literals: config.record_literals,
        custom_fields: config
            .custom_fields
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    });
    Arc::new(LiveRule { inner, fields })
}

/// dftrace's recording nodes, then upstream's `Instrument` rule around each;
/// standing aside when the query's trace is known not to be sampled: then
/// no operator span would be exported, so the plan runs unwrapped and pays
/// nothing (no spans, metrics or previews). Without an OpenTelemetry layer
/// the sampling decision is unknown and the plan is wrapped as usual.
#[derive(Debug)]
struct LiveRule {
    inner: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
    fields: Arc<LiveFields>,
}

impl PhysicalOptimizerRule for LiveRule {
    fn optimize(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        config: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let current = Span::current();
        if trace_known_unsampled(&current) {
            return Ok(plan);
        }
        let unused = dftrace_registry::literals::QueryLiterals::default();
        let recorded = wrap_operators(plan, 0, None, Some(&self.fields), &unused)?;
        self.inner.optimize(recorded, config)
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_check(&self) -> bool {
        self.inner.schema_check()
    }
}
