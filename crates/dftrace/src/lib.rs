//! `dftrace`: observability for Apache DataFusion in one dependency.
//!
//! Adding this crate links every dftrace component its features select
//! (operator and planner spans, redacted previews, storage spans, the
//! metrics summary); a host's whole setup is one call that reads the
//! configuration (a preset, `DFTRACE_CONFIG`, `DFTRACE_*` and the standard
//! `OTEL_*` variables and `RUST_LOG`) and installs telemetry, and one call on its
//! `SessionStateBuilder`:
//!
//! ```
//! use datafusion::execution::SessionStateBuilder;
//! use datafusion::prelude::SessionContext;
//! use dftrace::SessionStateBuilderExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("dftrace-facade-doc-{}", std::process::id()));
//! # let config = dftrace::DftraceConfig::builder()
//! #     .set("export.sink", "file")
//! #     .set("export.file.dir", dir.display().to_string())
//! #     .build()?;
//! let dftrace = dftrace::init_with(config)?; // or dftrace::init(): from the environment
//! let state = SessionStateBuilder::new().with_default_features().build_with_dftrace(&dftrace)?;
//! let ctx = SessionContext::new_with_state(state);
//!
//! let rows = ctx.sql("SELECT 1 AS one").await?.collect().await?;
//! assert_eq!(rows[0].num_rows(), 1);
//! let report = dftrace.shutdown(); // or drop it: every span is flushed
//! assert_eq!(report.dropped(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! Every statement gets a root span (`dftrace.query`) whatever API runs it;
//! `dftrace::rules::run_sql` adds identity (a `traceparent`, attributes, a
//! run id) and a handle on the query's trace. The components stay usable
//! alone: each is its own crate, re-exported here.
//!
//! # Feature flags
//!
//! - `rules` (default): operator spans built from the executed plan, planner
//!   spans, the root query span ([`rules`], `dftrace-rules`).
//! - `preview` (default): redacted row previews for the `maximal` preset
//!   ([`preview`], `dftrace-preview-redaction`).
//! - `object-store` (default): storage request spans and per-query bytes
//!   ([`object_store`], `dftrace-object-store-registry`); `s3`, `gcs`,
//!   `azure` and `http` build those object store backends.
//! - `metrics` (default): the per-query metrics summary and OpenTelemetry
//!   metrics ([`metrics`], `dftrace-metrics-summary`).
//! - `export-http` (default): OTLP over HTTP (protobuf and JSON);
//!   `export-grpc`: OTLP over gRPC. Without either, spans go to the
//!   OTLP-JSON-lines file sink, the console, or nowhere.
//! - `distributed`: one trace across datafusion-distributed workers
//!   (`distributed`, `dftrace-distributed`).
//! - `history`: the session's recent queries, their operators and past
//!   trace files as SQL tables (`dftrace.queries`, `dftrace.operators`,
//!   `dftrace.spans`) once `history.enabled` is set (`history`,
//!   `dftrace-history`).
//! - `udf`: the host's scalar, aggregate and window functions observed per
//!   query: a span per function under the root, their figures in the
//!   metrics summary, OpenTelemetry metrics (`udf`, `dftrace-udf`).
//! - `caches`: DataFusion's file metadata, file statistics and list-files
//!   caches observed per query: hits, misses and holdings on the root span,
//!   their totals in the metrics summary, OpenTelemetry counters (`caches`,
//!   `dftrace-caches`).
//! - `memory`: the session's memory pool observed once `memory.enabled` is
//!   set: each query's and each operator's peak reservation, the pool's
//!   limit and refused reservations on the spans, OpenTelemetry metrics
//!   (`memory`, `dftrace-memory`).

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;

pub use dftrace_bootstrap as bootstrap;
pub use dftrace_bootstrap::{
    ExportConfig, ExportOverrides, Protocol, Sampler, ShutdownReport, Sink, TelemetryGuard,
};
pub use dftrace_registry as registry;
pub use dftrace_registry::{ConfigBuilder, DftraceConfig, Preset};
#[cfg(feature = "rules")]
#[cfg_attr(docsrs, doc(cfg(feature = "rules")))]
pub use dftrace_rules::{OperatorSpans, RuleMode, RulesOverrides};

/// The traits a host calls through: `use dftrace::prelude::*;`.
pub mod prelude {
    pub use crate::SessionStateBuilderExt as _;
    pub use dftrace_bootstrap::ExportOverrides as _;
    #[cfg(feature = "rules")]
    pub use dftrace_rules::RulesOverrides as _;
}

#[cfg(feature = "caches")]
#[cfg_attr(docsrs, doc(cfg(feature = "caches")))]
pub use dftrace_caches as caches;
#[cfg(feature = "distributed")]
#[cfg_attr(docsrs, doc(cfg(feature = "distributed")))]
pub use dftrace_distributed as distributed;
#[cfg(feature = "history")]
#[cfg_attr(docsrs, doc(cfg(feature = "history")))]
pub use dftrace_history as history;
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use dftrace_memory as memory;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use dftrace_metrics_summary as metrics;
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use dftrace_object_store_registry as object_store;
#[cfg(feature = "preview")]
#[cfg_attr(docsrs, doc(cfg(feature = "preview")))]
pub use dftrace_preview_redaction as preview;
#[cfg(feature = "rules")]
#[cfg_attr(docsrs, doc(cfg(feature = "rules")))]
pub use dftrace_rules as rules;
#[cfg(feature = "udf")]
#[cfg_attr(docsrs, doc(cfg(feature = "udf")))]
pub use dftrace_udf as udf;

/// Why dftrace could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration has a bad value (the message names the field, the
    /// value, where it came from and what is accepted).
    #[error(transparent)]
    Config(#[from] dftrace_registry::ConfigError),
    /// Telemetry could not be installed.
    #[error(transparent)]
    Telemetry(#[from] dftrace_bootstrap::BootstrapError),
    /// A plugin refused the session.
    #[error(transparent)]
    Session(#[from] dftrace_registry::RegistryError),
}

/// dftrace set up for a process: the configuration every session uses and,
/// when dftrace installed it ([`init`], [`init_with`]), the telemetry.
/// Dropping it (or [`Dftrace::shutdown`]) flushes every pending span and
/// metric of that telemetry.
#[derive(Debug)]
#[must_use = "dropping it shuts telemetry down"]
pub struct Dftrace {
    config: DftraceConfig,
    telemetry: Option<TelemetryGuard>,
}

impl Dftrace {
    /// The configuration the sessions are built with.
    pub fn config(&self) -> &DftraceConfig {
        &self.config
    }

    /// The telemetry dftrace installed (its sink, trace file, meter
    /// provider); `None` for a host that owns its own ([`init_for_host`]).
    pub fn telemetry(&self) -> Option<&TelemetryGuard> {
        self.telemetry.as_ref()
    }

    /// The `tracing` layer a host that owns its subscriber and its
    /// OpenTelemetry provider adds to its subscriber, in place of its own
    /// `tracing_opentelemetry::layer()`: it exports the host's spans as
    /// that layer would, through `tracer` (from the host's provider), and
    /// dftrace's with them (the operator and rule spans dftrace builds
    /// itself go through the same tracer). See [`init_for_host`].
    pub fn layer<S>(
        &self,
        tracer: opentelemetry_sdk::trace::Tracer,
    ) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let export: ExportConfig = self.config.section().unwrap_or_default();
        dftrace_bootstrap::otel_layer(tracer, &export)
    }

    /// Waits (up to `export.shutdown_timeout_ms`) until the spans dftrace
    /// builds after each query has returned (its operator spans, off the
    /// query's path) are built and handed to the provider; `true` when
    /// nothing is left. A host that reads its own exporter right after a
    /// query, or shuts its provider down, calls this first.
    pub fn flush(&self) -> bool {
        let export: ExportConfig = self.config.section().unwrap_or_default();
        let timeout = std::time::Duration::from_millis(export.shutdown_timeout_ms);
        dftrace_registry::flush_pending_work(timeout)
    }

    /// Flushes and stops the telemetry dftrace installed and reports what
    /// was delivered. For a host that owns its telemetry, waits (up to
    /// `export.shutdown_timeout_ms`) for the spans dftrace builds after
    /// each query has returned; the host then shuts its own provider down,
    /// which flushes them with its own spans, and the report is empty.
    pub fn shutdown(self) -> ShutdownReport {
        match self.telemetry {
            Some(telemetry) => telemetry.shutdown(),
            None => {
                self.flush();
                ShutdownReport::default()
            }
        }
    }
}

/// Reads the configuration from the environment (`DFTRACE_PRESET`,
/// `DFTRACE_CONFIG`, `DFTRACE_*`, `OTEL_*`, `RUST_LOG`) and installs telemetry for the
/// process (once per process).
pub fn init() -> Result<Dftrace, Error> {
    init_with(config_builder().build()?)
}

/// A configuration builder with the process environment as its environment
/// layer, for typed overrides in code (which win over the preset, the file
/// and the environment):
///
/// ```
/// use dftrace::prelude::*;
/// let config = dftrace::config_builder()
///     .preset(dftrace::Preset::MaximalNoData)
///     .sink(dftrace::Sink::Console)
///     .service_name("billing")
///     .sampler(dftrace::Sampler::ParentBasedTraceIdRatio)
///     .sampler_arg(0.1)
///     .rule_mode(dftrace::RuleMode::PhaseOnly)
///     .set("metrics.otel_metrics", false) // any other field, by path
///     .build()?;
/// assert_eq!(config.preset(), dftrace::Preset::MaximalNoData);
/// # Ok::<(), dftrace::registry::ConfigError>(())
/// ```
pub fn config_builder() -> ConfigBuilder {
    DftraceConfig::builder().env(std::env::vars())
}

/// Installs telemetry from `config` (built with [`config_builder`] or [`DftraceConfig::builder`],
/// which layers a preset, a file, the environment and code).
pub fn init_with(config: DftraceConfig) -> Result<Dftrace, Error> {
    let export: ExportConfig = config.section()?;
    let telemetry = dftrace_bootstrap::init(&export)?;
    Ok(Dftrace {
        config,
        telemetry: Some(telemetry),
    })
}

/// dftrace for a host that owns its `tracing` subscriber and its
/// OpenTelemetry provider: nothing is installed. The host adds
/// [`Dftrace::layer`] to its subscriber (in place of its own
/// `tracing_opentelemetry::layer()`), keeps its log layer, its request
/// spans and its sampler, and builds its sessions with
/// [`SessionStateBuilderExt::build_with_dftrace`]:
///
/// ```
/// use datafusion::execution::SessionStateBuilder;
/// use datafusion::prelude::SessionContext;
/// use dftrace::SessionStateBuilderExt;
/// use opentelemetry::trace::TracerProvider as _;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The host's own provider, exporter and sampler.
/// let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
///     .with_simple_exporter(exporter.clone())
///     .build();
///
/// let dftrace = dftrace::init_for_host(dftrace::config_builder().build()?)?;
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer()) // the host's logs, as before
///     .with(dftrace.layer(provider.tracer("orders-service")));
/// let _default = tracing::subscriber::set_default(subscriber); // or `.init()`
///
/// let state = SessionStateBuilder::new().with_default_features().build_with_dftrace(&dftrace)?;
/// let ctx = SessionContext::new_with_state(state);
/// ctx.sql("SELECT 1 AS one").await?.collect().await?;
/// dftrace.flush(); // the operator spans are built after the query returns
/// provider.force_flush()?;
/// let spans = exporter.get_finished_spans()?;
/// assert!(spans.iter().any(|span| span.name == "dftrace.query"));
/// # Ok(())
/// # }
/// ```
///
/// Metrics go through the global meter provider
/// (`opentelemetry::global::set_meter_provider`), the host's to set. The
/// subscriber's filter must let dftrace's targets through (`dftrace=info`
/// or finer): building a session under a subscriber that drops them is an
/// error that says so.
pub fn init_for_host(config: DftraceConfig) -> Result<Dftrace, Error> {
    // The export section is read once here, so a bad value fails now.
    let _: ExportConfig = config.section()?;
    Ok(Dftrace {
        config,
        telemetry: None,
    })
}

/// The one call on a host's `SessionStateBuilder`.
pub trait SessionStateBuilderExt: Sized {
    /// Applies every linked dftrace plugin under `dftrace`'s configuration
    /// and builds the state (the host's own builder calls come before it;
    /// dftrace's operator rule still ends up last).
    fn build_with_dftrace(self, dftrace: &Dftrace) -> Result<SessionState, Error>;
}

impl SessionStateBuilderExt for SessionStateBuilder {
    fn build_with_dftrace(self, dftrace: &Dftrace) -> Result<SessionState, Error> {
        use dftrace_registry::RegistryStateBuilderExt as _;
        Ok(self.with_dftrace(&dftrace.config)?.build_dftrace()?)
    }
}

// The repository README's host example compiles and links against this
// crate alone, as a host's would.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
