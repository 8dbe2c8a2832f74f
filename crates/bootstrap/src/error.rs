//! What can go wrong setting up telemetry, each error naming the setting
//! and what is accepted.

use std::path::PathBuf;

/// A setting `init` cannot run with, or a failure installing telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// A setting holds a value that is not accepted.
    #[error("invalid value `{value}` for {field}: expected {expected}")]
    Invalid {
        /// The field (and its variable).
        field: &'static str,
        /// The value.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// The protocol needs a cargo feature this build lacks.
    #[error(
        "OTLP protocol {protocol} needs the `{feature}` feature of dftrace-bootstrap, which this \
         build does not have: with the `dftrace` crate, add `features = [\"{facade}\"]` to its \
         line in Cargo.toml; depending on dftrace-bootstrap directly, `features = \
         [\"{feature}\"]`; or set `export.otlp.protocol` to one this build has \
         (see docs/troubleshooting.md)",
        facade = facade_export_feature(feature)
    )]
    MissingFeature {
        /// The protocol.
        protocol: &'static str,
        /// The feature.
        feature: &'static str,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        /// The endpoint (a password in it masked).
        endpoint: String,
        /// What the exporter reported.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The trace file could not be opened.
    #[error("cannot open the trace file {}: {source}", path.display())]
    TraceFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The filter directives do not parse.
    #[error("invalid tracing filter `{directives}` in {origin}: {source}")]
    Filter {
        /// `export.log_filter (RUST_LOG)` or `export.filter`.
        origin: &'static str,
        /// The directives.
        directives: String,
        /// What the parser reported.
        source: tracing_subscriber::filter::ParseError,
    },
    /// `init` was already called in this process.
    #[error(
        "dftrace-bootstrap is already initialized in this process; call init once and keep its guard"
    )]
    AlreadyInitialized,
    /// Another global `tracing` subscriber was installed first.
    #[error("a global tracing subscriber is already installed: {0}")]
    SubscriberInstalled(#[source] tracing_subscriber::util::TryInitError),
    /// The runtime for the gRPC exporter could not start.
    #[error("cannot start the runtime for the gRPC exporter: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The `dftrace` facade's feature that turns on bootstrap's `feature`.
fn facade_export_feature(feature: &str) -> String {
    format!("export-{feature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_feature_is_named_as_the_facade_host_adds_it() {
        let message = BootstrapError::MissingFeature {
            protocol: "grpc",
            feature: "grpc",
        }
        .to_string();
        assert!(
            message.contains(r#"features = ["export-grpc"]"#),
            "{message}"
        );
        assert!(message.contains(r#"features = ["grpc"]"#), "{message}");
    }
}
