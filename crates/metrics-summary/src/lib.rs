//! `dftrace-metrics-summary`: a stable per-query metrics summary for
//! DataFusion, recorded as typed attributes on the root query span and as
//! OpenTelemetry metrics.
//!
//! `datafusion-tracing` records DataFusion's metrics on operator spans as
//! display strings (`"8.0 B"`). This crate gives numbers:
//!
//! - [`summarize`] walks an executed plan (through instrumentation wrappers)
//!   into a serde [`QueryMetricsSummary`] with a schema version;
//! - [`record_on_span`] sets its figures on a span as integer and float
//!   OpenTelemetry attributes (`dftrace.metrics.*`);
//! - [`QueryInstruments`] records `dftrace.query.duration` and counters with
//!   only low-cardinality attributes.
//!
//! ```
//! use datafusion::prelude::SessionContext;
//! use dftrace_metrics_summary::summarize;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ctx = SessionContext::new();
//! let df = ctx.sql("SELECT v % 3 AS k, count(*) FROM unnest(range(0, 90)) AS t(v) GROUP BY k").await?;
//! let task = std::sync::Arc::new(df.task_ctx());
//! let plan = df.create_physical_plan().await?;
//! datafusion::physical_plan::collect(plan.clone(), task).await?;
//!
//! let summary = summarize(&plan);
//! assert_eq!(summary.output_rows, Some(3));
//! println!("{}", serde_json::to_string_pretty(&summary)?);
//! # Ok(())
//! # }
//! ```
//!
//! With the default `registry` feature the crate registers the `metrics`
//! plugin: a query observer that, at the end of every root query span from
//! `dftrace-rules`, summarizes the executed plan, records the attributes on
//! the span and updates the instruments (on the global meter provider, which
//! `dftrace-bootstrap` installs).
//!
//! # Feature flags
//!
//! - `registry` (default): register the `metrics` plugin.
//! - `storage` (default): add storage bytes read and written per query from
//!   `dftrace-object-store-registry`.
//! - `functions`: add each observed function's calls, rows, time and errors
//!   from `dftrace-udf` (`functions`, and `dftrace.metrics.function_time_ns`).
//! - `caches`: add each cache's hits and misses from `dftrace-caches`
//!   (`caches`, and `dftrace.metrics.cache_hits` / `cache_misses`).
//!
//! `functions` and `caches` are off by default: each links its plugin,
//! which then observes the session. The `dftrace` facade turns them on
//! with its `udf` and `caches` features.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod instruments;
mod summary;

pub use instruments::{QueryInstruments, QueryOutcome};
pub use summary::{
    CacheSummary, FunctionSummary, OperatorSummary, QueryMetricsSummary, SCHEMA_VERSION, summarize,
};

use dftrace_registry::saturating_i64;
use dftrace_registry::{Preset, Section, keys};
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Metrics settings: the `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Record the summary as typed attributes on the root query span.
    pub span_attributes: bool,
    /// Record OpenTelemetry metrics (duration histogram, counters).
    pub otel_metrics: bool,
}

impl Section for MetricsConfig {
    const NAME: &'static str = "metrics";

    fn for_preset(_preset: Preset) -> Self {
        // Every preset records metrics (the design's table).
        MetricsConfig {
            span_attributes: true,
            otel_metrics: true,
        }
    }
}

/// The summary's figures as typed attributes, `dftrace.metrics.<field>`:
/// integers as `i64`, the selectivity as `f64`. Absent figures are skipped.
pub fn attributes(summary: &QueryMetricsSummary) -> Vec<KeyValue> {
    let attribute = |key: &'static str, value: Option<u64>| {
        value.map(|v| KeyValue::new(key, saturating_i64(v)))
    };
    [
        attribute("dftrace.metrics.output_rows", summary.output_rows),
        attribute("dftrace.metrics.output_batches", summary.output_batches),
        attribute("dftrace.metrics.output_bytes", summary.output_bytes),
        attribute(
            "dftrace.metrics.elapsed_compute_ns",
            summary.elapsed_compute_ns,
        ),
        attribute("dftrace.metrics.spill_count", summary.spill_count),
        attribute(keys::SUMMARY_SPILLED_BYTES, summary.spilled_bytes),
        attribute("dftrace.metrics.spilled_rows", summary.spilled_rows),
        attribute("dftrace.metrics.bytes_scanned", summary.bytes_scanned),
        attribute("dftrace.metrics.files_opened", summary.files_opened),
        attribute(
            "dftrace.metrics.operator_count",
            Some(summary.operator_count as u64),
        ),
        attribute(
            "dftrace.metrics.storage_bytes_read",
            summary.storage_bytes_read,
        ),
        attribute(
            "dftrace.metrics.storage_bytes_written",
            summary.storage_bytes_written,
        ),
        summary
            .filter_selectivity
            .map(|s| KeyValue::new("dftrace.metrics.filter_selectivity", s)),
        (!summary.functions.is_empty()).then(|| {
            let time: u64 = summary.functions.iter().map(|f| f.time_ns).sum();
            KeyValue::new("dftrace.metrics.function_time_ns", saturating_i64(time))
        }),
        (!summary.caches.is_empty()).then(|| {
            let hits: u64 = summary.caches.iter().map(|c| c.hits).sum();
            KeyValue::new("dftrace.metrics.cache_hits", saturating_i64(hits))
        }),
        (!summary.caches.is_empty()).then(|| {
            let misses: u64 = summary.caches.iter().map(|c| c.misses).sum();
            KeyValue::new("dftrace.metrics.cache_misses", saturating_i64(misses))
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Sets [`attributes`] on `span` through OpenTelemetry, so they keep their
/// types (`tracing` fields would turn `u64` into strings).
pub fn record_on_span(summary: &QueryMetricsSummary, span: &tracing::Span) {
    for attribute in attributes(summary) {
        span.set_attribute(attribute.key, attribute.value);
    }
}

#[cfg(feature = "registry")]
mod plugin {
    use crate::{MetricsConfig, QueryInstruments, record_on_span, summarize};
    use datafusion::execution::SessionStateBuilder;
    use dftrace_registry::{Plugin, PluginContext, QueryEnd, QueryObserver, Stage};
    use std::sync::{Arc, OnceLock};

    /// Summarizes each query as it ends.
    #[derive(Debug)]
    struct MetricsObserver {
        config: MetricsConfig,
    }

    /// The process's instruments, made on first use from the global meter
    /// provider in force then: once, not per session (an observable
    /// gauge's callback lives as long as its provider).
    static INSTRUMENTS: OnceLock<QueryInstruments> = OnceLock::new();

    impl QueryObserver for MetricsObserver {
        fn on_query_end(&self, end: &QueryEnd<'_>) {
            let summary = end.plan.map(|plan| {
                #[allow(unused_mut, reason = "only the storage feature adds to it")]
                let mut summary = summarize(plan);
                #[cfg(feature = "storage")]
                if let Some(totals) = dftrace_object_store_registry::query_storage_totals(end.span)
                {
                    summary.storage_bytes_read = Some(totals.bytes_read);
                    summary.storage_bytes_written = Some(totals.bytes_written);
                }
                #[cfg(feature = "functions")]
                {
                    summary.functions = dftrace_udf::query_functions(end.span)
                        .into_iter()
                        .map(|((name, _), f)| crate::FunctionSummary {
                            name,
                            kind: f.kind.as_str().to_owned(),
                            calls: f.calls,
                            rows: f.rows,
                            time_ns: f.time_ns,
                            errors: f.errors,
                        })
                        .collect();
                }
                #[cfg(feature = "caches")]
                {
                    summary.caches = dftrace_caches::query_cache_counts(end.span)
                        .into_iter()
                        .map(|(cache, counts)| crate::CacheSummary {
                            cache: cache.to_owned(),
                            hits: counts.hits,
                            misses: counts.misses,
                        })
                        .collect();
                }
                summary
            });
            // An unsampled trace exports nothing: its attributes would be
            // built for nothing. The OpenTelemetry metrics below still count it.
            if self.config.span_attributes
                && let Some(summary) = &summary
                && !end.unsampled
            {
                record_on_span(summary, end.span);
            }
            if self.config.otel_metrics {
                let instruments = INSTRUMENTS.get_or_init(|| {
                    QueryInstruments::new(&opentelemetry::global::meter(
                        dftrace_registry::keys::SCOPE_NAME,
                    ))
                });
                let outcome = if end.error.is_some() {
                    crate::QueryOutcome::Error
                } else if end.cancelled {
                    crate::QueryOutcome::Cancelled
                } else {
                    crate::QueryOutcome::Ok
                };
                instruments.record(end.elapsed, outcome, summary.as_ref());
            }
        }
    }

    fn on_builder(
        builder: SessionStateBuilder,
        context: &mut PluginContext<'_>,
    ) -> datafusion::error::Result<SessionStateBuilder> {
        let config: MetricsConfig = context.section()?;
        if config.span_attributes || config.otel_metrics {
            context
                .services()
                .add_query_observer(Arc::new(MetricsObserver { config }));
        }
        Ok(builder)
    }

    dftrace_registry::inventory::submit! {
        Plugin::new::<MetricsConfig>(Stage::Observation).on_builder(on_builder)
    }
}

#[cfg(test)]
mod tests;
