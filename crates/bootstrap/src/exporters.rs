//! The span and metric exporters for a resolved sink: the file sink's and
//! OTLP's over gRPC or HTTP, behind the cargo features that build them.

use crate::config::{ExportConfig, Protocol};
use crate::error::BootstrapError;
use crate::settings::{Plan, invalid, signal_endpoint};
use crate::sinks::FileExporter;
use dftrace_registry::secrets::shown_url;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::time::Duration;

/// The exporters the batch processor can own.
#[derive(Debug)]
pub(crate) enum AnyExporter {
    File(FileExporter),
    #[cfg(any(feature = "grpc", feature = "http"))]
    Otlp(Box<opentelemetry_otlp::SpanExporter>),
}

impl SpanExporter for AnyExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        match self {
            AnyExporter::File(exporter) => exporter.export(batch).await,
            #[cfg(any(feature = "grpc", feature = "http"))]
            AnyExporter::Otlp(exporter) => exporter.export(batch).await,
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match self {
            AnyExporter::File(exporter) => exporter.shutdown_with_timeout(timeout),
            #[cfg(any(feature = "grpc", feature = "http"))]
            AnyExporter::Otlp(exporter) => exporter.shutdown_with_timeout(timeout),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        match self {
            AnyExporter::File(exporter) => exporter.force_flush(),
            #[cfg(any(feature = "grpc", feature = "http"))]
            AnyExporter::Otlp(exporter) => exporter.force_flush(),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        match self {
            AnyExporter::File(exporter) => exporter.set_resource(resource),
            #[cfg(any(feature = "grpc", feature = "http"))]
            AnyExporter::Otlp(exporter) => exporter.set_resource(resource),
        }
    }
}

/// The runtime the gRPC exporter's channel lives on, when gRPC is used.
#[cfg(feature = "grpc")]
pub(crate) type ExportRuntime = Option<tokio::runtime::Runtime>;
#[cfg(not(feature = "grpc"))]
pub(crate) type ExportRuntime = ();

/// Without an OTLP feature there is no OTLP exporter to build.
#[cfg(not(any(feature = "grpc", feature = "http")))]
pub(crate) fn otlp_exporter(
    config: &ExportConfig,
    _plan: &Plan,
    _endpoint: &str,
) -> Result<(AnyExporter, Option<SdkMeterProvider>, ExportRuntime), BootstrapError> {
    let feature = if config.otlp.protocol == Protocol::Grpc {
        "grpc"
    } else {
        "http"
    };
    Err(BootstrapError::MissingFeature {
        protocol: crate::settings::protocol_name(config.otlp.protocol),
        feature,
    })
}

/// The OTLP span exporter and meter provider for `plan`'s OTLP sink.
#[cfg(any(feature = "grpc", feature = "http"))]
pub(crate) fn otlp_exporter(
    config: &ExportConfig,
    plan: &Plan,
    endpoint: &str,
) -> Result<(AnyExporter, Option<SdkMeterProvider>, ExportRuntime), BootstrapError> {
    // The batch processor has no timeout of its own on the exporter thread:
    // the exporter's is the one that holds.
    let timeout = Duration::from_millis(config.otlp.timeout_ms.min(config.batch.export_timeout_ms));
    let metrics_endpoint = signal_endpoint(
        config.otlp.protocol,
        config.otlp.endpoint.as_deref(),
        config.otlp.metrics_endpoint.as_deref(),
        "metrics",
    );
    let build_error = |source: opentelemetry_otlp::ExporterBuildError| BootstrapError::Exporter {
        endpoint: shown_url(endpoint),
        source,
    };
    let interval = Duration::from_millis(config.metric_export_interval_ms);
    let meter = |exporter: opentelemetry_otlp::MetricExporter| {
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        SdkMeterProvider::builder()
            .with_resource(plan.resource.clone())
            .with_reader(reader)
            .build()
    };
    match config.otlp.protocol {
        #[cfg(feature = "grpc")]
        Protocol::Grpc => {
            use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("dftrace-otlp")
                .enable_all()
                .build()
                .map_err(BootstrapError::Runtime)?;
            // tonic's channel spawns its connection task on the runtime that
            // is current when it is built.
            let _entered = runtime.enter();
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (key, value) in &config.otlp.headers {
                let key = key
                    .parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>()
                    .map_err(|_| {
                        invalid(
                            "export.otlp.headers (OTEL_EXPORTER_OTLP_HEADERS)",
                            key,
                            "valid gRPC metadata keys",
                        )
                    })?;
                let value = value.parse().map_err(|_| {
                    invalid(
                        "export.otlp.headers (OTEL_EXPORTER_OTLP_HEADERS)",
                        value,
                        "ASCII header values",
                    )
                })?;
                metadata.insert(key, value);
            }
            let compression = match config.otlp.compression {
                crate::config::Compression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
                crate::config::Compression::None => None,
            };
            let mut spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .with_metadata(metadata.clone());
            let mut metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(metrics_endpoint)
                .with_timeout(timeout)
                .with_metadata(metadata);
            if let Some(compression) = compression {
                spans = spans.with_compression(compression);
                metrics = metrics.with_compression(compression);
            }
            let spans = spans.build().map_err(build_error)?;
            let metrics = metrics.build().map_err(build_error)?;
            drop(_entered);
            Ok((
                AnyExporter::Otlp(Box::new(spans)),
                Some(meter(metrics)),
                Some(runtime),
            ))
        }
        #[cfg(not(feature = "grpc"))]
        Protocol::Grpc => Err(BootstrapError::MissingFeature {
            protocol: "grpc",
            feature: "grpc",
        }),
        #[cfg(feature = "http")]
        Protocol::HttpProtobuf | Protocol::HttpJson => {
            use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
            let protocol = if config.otlp.protocol == Protocol::HttpJson {
                opentelemetry_otlp::Protocol::HttpJson
            } else {
                opentelemetry_otlp::Protocol::HttpBinary
            };
            let headers: std::collections::HashMap<String, String> = config
                .otlp
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let compression = match config.otlp.compression {
                crate::config::Compression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
                crate::config::Compression::None => None,
            };
            let mut spans = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .with_headers(headers.clone());
            let mut metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(metrics_endpoint)
                .with_timeout(timeout)
                .with_headers(headers);
            if let Some(compression) = compression {
                spans = spans.with_compression(compression);
                metrics = metrics.with_compression(compression);
            }
            let spans = spans.build().map_err(build_error)?;
            let metrics = metrics.build().map_err(build_error)?;
            #[cfg(feature = "grpc")]
            let runtime = None;
            #[cfg(not(feature = "grpc"))]
            let runtime = ();
            Ok((
                AnyExporter::Otlp(Box::new(spans)),
                Some(meter(metrics)),
                runtime,
            ))
        }
        #[cfg(not(feature = "http"))]
        Protocol::HttpProtobuf | Protocol::HttpJson => Err(BootstrapError::MissingFeature {
            protocol: crate::settings::protocol_name(config.otlp.protocol),
            feature: "http",
        }),
    }
}
