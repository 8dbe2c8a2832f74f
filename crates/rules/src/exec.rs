//! The execution instrumentation rule: one span per physical operator,
//! built from the executed plan (`deferred`, the default) or open while the
//! operator runs (`live`).

use crate::config::{OperatorSpans, RulesConfig};
use crate::error::RulesError;
use crate::operators::{DeferredOptions, DeferredRule};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use dftrace_registry::{ColumnSources, PreviewFormatter};
use std::sync::Arc;
use std::time::Duration;

pub use dftrace_registry::keys::EXEC_TARGET;

/// The execution instrumentation rule for `config`, named `Instrument`: add
/// it as the last physical optimizer rule (the registry does this for you).
///
/// With `rules.operator_spans = "deferred"` (the default) it wraps each node
/// in a thin recording node and, when the query's root span ends, builds
/// one span per operator from the executed plan; with `"live"` it is
/// `datafusion-tracing`'s `Instrument` rule.
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
    let preview = (config.preview_limit > 0).then(|| guarded(preview.unwrap_or_else(plain_table)));
    match config.operator_spans {
        OperatorSpans::Deferred => {
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
            Ok(Arc::new(DeferredRule::new(options, config.preview_limit)))
        }
        OperatorSpans::Live => Ok(crate::live::live_rule(
            config,
            preview.map(|formatter| formatter.by_name),
        )),
    }
}

/// What a preview shows when its formatter fails or panics. The failure's
/// own message is left out: it could quote the values being formatted.
pub const PREVIEW_FAILED: &str = "<preview unavailable: the formatter failed>";

/// Arrow's plain table, for hosts that allowed unredacted previews.
fn plain_table() -> PreviewFormatter {
    let plain = |batch: &RecordBatch| {
        datafusion::arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))
            .map(|table| table.to_string())
    };
    PreviewFormatter {
        by_name: Arc::new(plain),
        by_sources: Arc::new(move |batch: &RecordBatch, _: &[ColumnSources]| plain(batch)),
    }
}

/// `preview` such that a failure or a panic becomes [`PREVIEW_FAILED`]
/// instead of a missing attribute or a panicked query.
fn guarded(preview: PreviewFormatter) -> PreviewFormatter {
    let PreviewFormatter {
        by_name,
        by_sources,
    } = preview;
    let failed = |text: std::thread::Result<datafusion::arrow::error::Result<String>>| match text {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(_)) | Err(_) => Ok(PREVIEW_FAILED.to_owned()),
    };
    PreviewFormatter {
        by_name: Arc::new(move |batch| {
            failed(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || by_name(batch),
            )))
        }),
        by_sources: Arc::new(move |batch, sources| {
            failed(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || by_sources(batch, sources),
            )))
        }),
    }
}
