//! The execution instrumentation rule: one span per physical operator.

use crate::config::RulesConfig;
use crate::error::RulesError;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion_tracing::InstrumentationOptions;
use dftrace_registry::{PreviewFn, SpanLevel};
use std::sync::Arc;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The tracing target of operator spans.
pub const EXEC_TARGET: &str = "dftrace::exec";

/// Declares the operator span at one level. `tracing` needs static field
/// names, so the fields `datafusion-tracing` records into are declared here:
/// the node's identity, the preview, and the DataFusion 55 metric names.
macro_rules! operator_span {
    ($level:expr) => {
        tracing::span!(
            target: EXEC_TARGET,
            $level,
            "InstrumentedExec",
            otel.name = tracing::field::Empty,
            datafusion.node = tracing::field::Empty,
            datafusion.partitioning = tracing::field::Empty,
            datafusion.emission_type = tracing::field::Empty,
            datafusion.boundedness = tracing::field::Empty,
            datafusion.preview = tracing::field::Empty,
            datafusion.preview_rows = tracing::field::Empty,
            datafusion.metrics.aggregate_arguments_time = tracing::field::Empty,
            datafusion.metrics.aggregation_time = tracing::field::Empty,
            datafusion.metrics.avg_fanout = tracing::field::Empty,
            datafusion.metrics.batches_split = tracing::field::Empty,
            datafusion.metrics.bloom_filter_eval_time = tracing::field::Empty,
            datafusion.metrics.build_input_batches = tracing::field::Empty,
            datafusion.metrics.build_input_rows = tracing::field::Empty,
            datafusion.metrics.build_mem_used = tracing::field::Empty,
            datafusion.metrics.build_time = tracing::field::Empty,
            datafusion.metrics.bytes_scanned = tracing::field::Empty,
            datafusion.metrics.bytes_written = tracing::field::Empty,
            datafusion.metrics.elapsed_compute = tracing::field::Empty,
            datafusion.metrics.emitting_time = tracing::field::Empty,
            datafusion.metrics.end_timestamp = tracing::field::Empty,
            datafusion.metrics.fetch_time = tracing::field::Empty,
            datafusion.metrics.file_open_errors = tracing::field::Empty,
            datafusion.metrics.file_scan_errors = tracing::field::Empty,
            datafusion.metrics.files_opened = tracing::field::Empty,
            datafusion.metrics.files_processed = tracing::field::Empty,
            datafusion.metrics.files_ranges_pruned_statistics = tracing::field::Empty,
            datafusion.metrics.input_batches = tracing::field::Empty,
            datafusion.metrics.input_rows = tracing::field::Empty,
            datafusion.metrics.join_time = tracing::field::Empty,
            datafusion.metrics.left_input_batches = tracing::field::Empty,
            datafusion.metrics.left_input_rows = tracing::field::Empty,
            datafusion.metrics.limit_pruned_row_groups = tracing::field::Empty,
            datafusion.metrics.max_mem_used = tracing::field::Empty,
            datafusion.metrics.max_queued = tracing::field::Empty,
            datafusion.metrics.mem_used = tracing::field::Empty,
            datafusion.metrics.metadata_load_time = tracing::field::Empty,
            datafusion.metrics.num_predicate_creation_errors = tracing::field::Empty,
            datafusion.metrics.output_batches = tracing::field::Empty,
            datafusion.metrics.output_bytes = tracing::field::Empty,
            datafusion.metrics.output_rows = tracing::field::Empty,
            datafusion.metrics.page_index_eval_time = tracing::field::Empty,
            datafusion.metrics.page_index_pages_pruned = tracing::field::Empty,
            datafusion.metrics.page_index_rows_pruned = tracing::field::Empty,
            datafusion.metrics.peak_mem_used = tracing::field::Empty,
            datafusion.metrics.predicate_cache_inner_records = tracing::field::Empty,
            datafusion.metrics.predicate_cache_records = tracing::field::Empty,
            datafusion.metrics.predicate_evaluation_errors = tracing::field::Empty,
            datafusion.metrics.probe_hit_rate = tracing::field::Empty,
            datafusion.metrics.pushdown_rows_matched = tracing::field::Empty,
            datafusion.metrics.pushdown_rows_pruned = tracing::field::Empty,
            datafusion.metrics.reduction_factor = tracing::field::Empty,
            datafusion.metrics.repartition_time = tracing::field::Empty,
            datafusion.metrics.right_input_batches = tracing::field::Empty,
            datafusion.metrics.right_input_rows = tracing::field::Empty,
            datafusion.metrics.row_groups_pruned_bloom_filter = tracing::field::Empty,
            datafusion.metrics.row_groups_pruned_statistics = tracing::field::Empty,
            datafusion.metrics.row_pushdown_eval_time = tracing::field::Empty,
            datafusion.metrics.row_replacements = tracing::field::Empty,
            datafusion.metrics.rows_written = tracing::field::Empty,
            datafusion.metrics.scan_efficiency_ratio = tracing::field::Empty,
            datafusion.metrics.selectivity = tracing::field::Empty,
            datafusion.metrics.send_time = tracing::field::Empty,
            datafusion.metrics.skipped_aggregation_rows = tracing::field::Empty,
            datafusion.metrics.spill_count = tracing::field::Empty,
            datafusion.metrics.spilled_bytes = tracing::field::Empty,
            datafusion.metrics.spilled_rows = tracing::field::Empty,
            datafusion.metrics.start_timestamp = tracing::field::Empty,
            datafusion.metrics.statistics_eval_time = tracing::field::Empty,
            datafusion.metrics.stream_memory_usage = tracing::field::Empty,
            datafusion.metrics.time_calculating_group_ids = tracing::field::Empty,
            datafusion.metrics.time_elapsed_opening = tracing::field::Empty,
            datafusion.metrics.time_elapsed_processing = tracing::field::Empty,
            datafusion.metrics.time_elapsed_scanning_total = tracing::field::Empty,
            datafusion.metrics.time_elapsed_scanning_until_data = tracing::field::Empty,
        )
    };
}

fn operator_span(level: SpanLevel) -> Span {
    match level {
        SpanLevel::Trace => operator_span!(tracing::Level::TRACE),
        SpanLevel::Debug => operator_span!(tracing::Level::DEBUG),
        SpanLevel::Info => operator_span!(tracing::Level::INFO),
        SpanLevel::Warn => operator_span!(tracing::Level::WARN),
        SpanLevel::Error => operator_span!(tracing::Level::ERROR),
    }
}

/// The execution instrumentation rule for `config`: a `datafusion-tracing`
/// `Instrument` rule whose operator spans carry the configured level,
/// metrics, previews and host custom fields. Add it as the last physical
/// optimizer rule (the registry does this for you).
///
/// `preview` is the formatter for `datafusion.preview`. When it is `None` and
/// `config.preview_limit > 0`, this fails unless
/// `config.allow_unredacted_preview` is set (then `datafusion-tracing`'s plain
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
    preview: Option<Arc<PreviewFn>>,
) -> Result<Arc<dyn PhysicalOptimizerRule + Send + Sync>, RulesError> {
    if config.preview_limit > 0 && preview.is_none() && !config.allow_unredacted_preview {
        return Err(RulesError::UnredactedPreview {
            limit: config.preview_limit,
        });
    }
    let mut options = InstrumentationOptions::builder()
        .record_metrics(config.record_metrics)
        .preview_limit(config.preview_limit);
    if let Some(preview) = preview {
        options = options.preview_fn(guarded(preview));
    }
    let level = config.span_level;
    let custom_fields: Vec<(String, String)> = config
        .custom_fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let span_create_fn = Arc::new(move || {
        let span = operator_span(level);
        // Host keys are only known at run time, so they go straight to the
        // OpenTelemetry span rather than through static tracing fields.
        for (key, value) in &custom_fields {
            span.set_attribute(key.clone(), value.clone());
        }
        span
    });
    Ok(Arc::new(SampledOnly {
        inner: datafusion_tracing::new_instrument_rule(span_create_fn, options.build()),
    }))
}

/// What a preview shows when its formatter fails or panics. The failure's
/// own message is left out: it could quote the values being formatted.
pub const PREVIEW_FAILED: &str = "<preview unavailable: the formatter failed>";

/// `preview` such that a failure or a panic becomes [`PREVIEW_FAILED`]
/// instead of a missing attribute or a panicked query: formatters run while
/// the operator's stream is dropped, where a panic would fail the query.
fn guarded(preview: Arc<PreviewFn>) -> Arc<PreviewFn> {
    Arc::new(move |batch| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| preview(batch))) {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(_)) | Err(_) => Ok(PREVIEW_FAILED.to_owned()),
        }
    })
}

/// Upstream's `Instrument` rule, standing aside when the query's trace is
/// known not to be sampled: then no operator span would be exported, so the
/// plan runs unwrapped and pays nothing (no spans, metrics or previews).
/// Without an OpenTelemetry layer the sampling decision is unknown and the
/// plan is wrapped as usual.
#[derive(Debug)]
struct SampledOnly {
    inner: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
}

impl PhysicalOptimizerRule for SampledOnly {
    fn optimize(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        config: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        if crate::query::trace_known_unsampled(&Span::current()) {
            return Ok(plan);
        }
        self.inner.optimize(plan, config)
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_check(&self) -> bool {
        self.inner.schema_check()
    }
}
