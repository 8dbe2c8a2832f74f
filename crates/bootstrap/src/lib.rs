//! `dftrace-bootstrap`: one init for `tracing-subscriber` and OpenTelemetry,
//! every sink, nothing lost at exit.
//!
//! [`init`] installs a global `tracing` subscriber — the
//! `tracing-opentelemetry` layer (see [`otel_layer`]) behind the
//! `export.filter` directives (see [`filter_layer`]), an optional log layer
//! on stderr behind `export.log_filter` (`RUST_LOG`; else `export.filter`),
//! and a `log` bridge —
//! plus an OpenTelemetry
//! tracer and meter provider, all from one [`ExportConfig`] (the `[export]`
//! section of the dftrace config, with the standard `OTEL_*` variables). It
//! returns a [`TelemetryGuard`]: shutting it down (or dropping it) flushes
//! every pending span and metric within `shutdown_timeout_ms`, and reports
//! how many spans were dropped — never silently.
//!
//! ```
//! use dftrace_bootstrap::{ExportConfig, Sink, init};
//!
//! let dir = std::env::temp_dir().join(format!("dftrace-doc-{}", std::process::id()));
//! let config = ExportConfig {
//!     sink: Sink::File,
//!     file: dftrace_bootstrap::FileConfig { dir: dir.display().to_string(), path: None },
//!     ..ExportConfig::default()
//! };
//! let guard = init(&config)?;
//! tracing::info_span!("work", items = 3_i64).in_scope(|| {});
//! let trace_file = guard.trace_file().map(|p| p.to_path_buf());
//! let report = guard.shutdown();
//! assert_eq!((report.ended, report.exported, report.dropped()), (1, 1, 0));
//! let text = std::fs::read_to_string(trace_file.unwrap())?;
//! assert!(text.contains("\"name\":\"work\""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The default sink (`auto`) exports over OTLP when an endpoint is configured
//! and otherwise writes OTLP-JSON lines to `dftrace-traces/` — any collector
//! can ingest that file later.
//!
//! # Feature flags
//!
//! - `registry` (default): register `[export]` with `dftrace-registry` as a
//!   config-only plugin (no DataFusion dependency).
//! - `grpc`: OTLP over gRPC (tonic, on a small Tokio runtime of its own).
//! - `http`: OTLP over HTTP, `http/protobuf` and `http/json` (blocking
//!   reqwest client on the batch processor's thread).

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod exporters;
mod overrides;
mod settings;
mod sinks;
mod telemetry;
mod tracer;
mod unsampled;

pub use config::{
    BatchConfig, Compression, ExportConfig, FileConfig, LogFormat, OtlpConfig, Protocol, Sampler,
    Sink,
};
pub use error::BootstrapError;
pub use overrides::ExportOverrides;
pub use settings::ResolvedSink;
pub use telemetry::{
    ScopedTelemetry, ShutdownReport, Telemetry, TelemetryGuard, build, filter_layer, init,
    otel_layer,
};
pub use unsampled::UnsampledTraceFilter;

#[cfg(feature = "registry")]
dftrace_registry::inventory::submit! {
    dftrace_registry::Plugin::new::<ExportConfig>(dftrace_registry::Stage::Environment)
}
