//! The export settings checked and resolved: the sink, the sampler and the
//! resource `build` installs.

use crate::config::{ExportConfig, Protocol, Sampler, Sink};
use crate::error::BootstrapError;
use dftrace_registry::secrets::{shown_setting, shown_url};
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::Sampler as OtelSampler;
use std::path::PathBuf;

/// Where spans go, resolved from `sink`, `OTEL_TRACES_EXPORTER`,
/// `OTEL_SDK_DISABLED` and the endpoints. Its `Debug` output masks the
/// password of an endpoint's user info.
#[derive(Clone, PartialEq, Eq)]
pub enum ResolvedSink {
    /// Nothing is exported.
    None,
    /// Only the console summary.
    Console,
    /// OTLP-JSON lines in this file.
    File(PathBuf),
    /// OTLP to this traces endpoint.
    Otlp {
        /// The protocol name (`grpc`, `http/protobuf`, `http/json`).
        protocol: &'static str,
        /// The traces endpoint, as used.
        endpoint: String,
    },
}

impl std::fmt::Debug for ResolvedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolvedSink::None => f.write_str("None"),
            ResolvedSink::Console => f.write_str("Console"),
            ResolvedSink::File(path) => f.debug_tuple("File").field(path).finish(),
            ResolvedSink::Otlp { protocol, endpoint } => f
                .debug_struct("Otlp")
                .field("protocol", protocol)
                .field("endpoint", &shown_url(endpoint))
                .finish(),
        }
    }
}

pub(crate) struct Plan {
    pub(crate) sink: ResolvedSink,
    pub(crate) console_summary: bool,
    pub(crate) sampler: OtelSampler,
    pub(crate) resource: Resource,
}

pub(crate) fn invalid(
    field: &'static str,
    value: impl ToString,
    expected: impl Into<String>,
) -> BootstrapError {
    BootstrapError::Invalid {
        field,
        // Header values and URL passwords stay out of the message.
        value: shown_setting(field, &value.to_string()),
        expected: expected.into(),
    }
}

pub(crate) fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Grpc => "grpc",
        Protocol::HttpProtobuf => "http/protobuf",
        Protocol::HttpJson => "http/json",
    }
}

/// The endpoint for one signal, following the specification: the
/// signal-specific variable is used as given; the base endpoint gets
/// `/v1/<signal>` appended for HTTP and is used as given for gRPC.
pub(crate) fn signal_endpoint(
    protocol: Protocol,
    base: Option<&str>,
    specific: Option<&str>,
    signal: &str,
) -> String {
    if let Some(specific) = specific {
        return specific.to_owned();
    }
    match (protocol, base) {
        (Protocol::Grpc, Some(base)) => base.to_owned(),
        (Protocol::Grpc, None) => "http://localhost:4317".to_owned(),
        (_, Some(base)) => format!("{}/v1/{signal}", base.trim_end_matches('/')),
        (_, None) => format!("http://localhost:4318/v1/{signal}"),
    }
}

fn check_endpoint(field: &'static str, value: &Option<String>) -> Result<(), BootstrapError> {
    if let Some(value) = value {
        let parsed = url::Url::parse(value).map_err(|error| {
            invalid(
                field,
                value,
                format!("an http:// or https:// URL ({error})"),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid(
                field,
                value,
                "an http:// or https:// URL with a host",
            ));
        }
    }
    Ok(())
}

/// Checks every setting and decides what to install.
pub(crate) fn resolve(config: &ExportConfig) -> Result<Plan, BootstrapError> {
    let batch = &config.batch;
    if !(1..=1_000_000).contains(&batch.max_queue_size) {
        return Err(invalid(
            "export.batch.max_queue_size (OTEL_BSP_MAX_QUEUE_SIZE)",
            batch.max_queue_size,
            "1 to 1000000",
        ));
    }
    if batch.max_export_batch_size == 0 || batch.max_export_batch_size > batch.max_queue_size {
        return Err(invalid(
            "export.batch.max_export_batch_size (OTEL_BSP_MAX_EXPORT_BATCH_SIZE)",
            batch.max_export_batch_size,
            format!("1 to max_queue_size ({})", batch.max_queue_size),
        ));
    }
    let millis = [
        (
            "export.batch.schedule_delay_ms (OTEL_BSP_SCHEDULE_DELAY)",
            batch.schedule_delay_ms,
        ),
        (
            "export.batch.export_timeout_ms (OTEL_BSP_EXPORT_TIMEOUT)",
            batch.export_timeout_ms,
        ),
        (
            "export.otlp.timeout_ms (OTEL_EXPORTER_OTLP_TIMEOUT)",
            config.otlp.timeout_ms,
        ),
        ("export.shutdown_timeout_ms", config.shutdown_timeout_ms),
        (
            "export.metric_export_interval_ms (OTEL_METRIC_EXPORT_INTERVAL)",
            config.metric_export_interval_ms,
        ),
    ];
    for (field, value) in millis {
        if !(1..=3_600_000).contains(&value) {
            return Err(invalid(field, value, "1 to 3600000 milliseconds"));
        }
    }
    check_endpoint(
        "export.otlp.endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)",
        &config.otlp.endpoint,
    )?;
    check_endpoint(
        "export.otlp.traces_endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)",
        &config.otlp.traces_endpoint,
    )?;
    check_endpoint(
        "export.otlp.metrics_endpoint (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)",
        &config.otlp.metrics_endpoint,
    )?;
    if config.service_name.trim().is_empty() {
        return Err(invalid(
            "export.service_name (OTEL_SERVICE_NAME)",
            "",
            "a non-empty name",
        ));
    }

    let ratio = || -> Result<f64, BootstrapError> {
        let ratio = config.sampler_arg.unwrap_or(1.0);
        if (0.0..=1.0).contains(&ratio) {
            Ok(ratio)
        } else {
            Err(invalid(
                "export.sampler_arg (OTEL_TRACES_SAMPLER_ARG)",
                ratio,
                "a ratio from 0 to 1",
            ))
        }
    };
    let sampler = match config.sampler {
        Sampler::AlwaysOn => OtelSampler::AlwaysOn,
        Sampler::AlwaysOff => OtelSampler::AlwaysOff,
        Sampler::TraceIdRatio => OtelSampler::TraceIdRatioBased(ratio()?),
        Sampler::ParentBasedAlwaysOn => OtelSampler::ParentBased(Box::new(OtelSampler::AlwaysOn)),
        Sampler::ParentBasedAlwaysOff => OtelSampler::ParentBased(Box::new(OtelSampler::AlwaysOff)),
        Sampler::ParentBasedTraceIdRatio => {
            OtelSampler::ParentBased(Box::new(OtelSampler::TraceIdRatioBased(ratio()?)))
        }
    };

    let mut sink = config.sink;
    if let Some(exporter) = &config.traces_exporter {
        sink = match exporter.trim().to_ascii_lowercase().as_str() {
            "otlp" => Sink::Otlp,
            "console" => Sink::Console,
            "none" => Sink::None,
            _ => {
                return Err(invalid(
                    "export.traces_exporter (OTEL_TRACES_EXPORTER)",
                    exporter,
                    "one of otlp, console, none",
                ));
            }
        };
    }
    if config.sdk_disabled {
        sink = Sink::None;
    }
    if sink == Sink::Auto {
        let configured = config.otlp.endpoint.is_some() || config.otlp.traces_endpoint.is_some();
        sink = if configured { Sink::Otlp } else { Sink::File };
    }
    let resolved = match sink {
        Sink::None => ResolvedSink::None,
        Sink::Console => ResolvedSink::Console,
        Sink::File => ResolvedSink::File(match &config.file.path {
            Some(path) => PathBuf::from(path),
            None => {
                let millis = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                PathBuf::from(&config.file.dir)
                    .join(format!("trace-{millis}-{}.jsonl", std::process::id()))
            }
        }),
        Sink::Otlp | Sink::Auto => ResolvedSink::Otlp {
            protocol: protocol_name(config.otlp.protocol),
            endpoint: signal_endpoint(
                config.otlp.protocol,
                config.otlp.endpoint.as_deref(),
                config.otlp.traces_endpoint.as_deref(),
                "traces",
            ),
        },
    };

    let mut attributes: Vec<KeyValue> = config
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if let Some(version) = &config.service_version {
        attributes.push(KeyValue::new("service.version", version.clone()));
    }
    // `builder_empty`: the config already holds OTEL_SERVICE_NAME and
    // OTEL_RESOURCE_ATTRIBUTES at their documented precedence.
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attributes(attributes)
        .build();

    Ok(Plan {
        console_summary: !config.sdk_disabled
            && (config.console_summary || resolved == ResolvedSink::Console),
        sink: resolved,
        sampler,
        resource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_specification() {
        use Protocol::*;
        let base = Some("http://collector:4318/");
        // One case a line: (protocol, base endpoint, the signal's own
        // endpoint, signal, expected).
        #[rustfmt::skip]
        let cases = [
            (HttpProtobuf, base, None, "traces", "http://collector:4318/v1/traces"),
            (HttpJson, base, None, "metrics", "http://collector:4318/v1/metrics"),
            (HttpProtobuf, base, Some("http://x/custom"), "traces", "http://x/custom"),
            (Grpc, Some("http://collector:4317"), None, "traces", "http://collector:4317"),
            (Grpc, None, None, "traces", "http://localhost:4317"),
            (HttpJson, None, None, "traces", "http://localhost:4318/v1/traces"),
        ];
        for (protocol, base, specific, signal, expected) in cases {
            assert_eq!(
                signal_endpoint(protocol, base, specific, signal),
                expected,
                "{protocol:?} {base:?} {specific:?} {signal}"
            );
        }
    }

    fn error(config: ExportConfig) -> String {
        resolve(&config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn bad_values_name_the_field_and_variable() {
        let base = ExportConfig::default;
        let mut c = base();
        c.batch.max_queue_size = 0;
        assert!(error(c).contains("export.batch.max_queue_size (OTEL_BSP_MAX_QUEUE_SIZE)"));
        let mut c = base();
        c.batch.max_export_batch_size = 5000;
        assert!(error(c).contains("1 to max_queue_size (2048)"));
        let mut c = base();
        c.otlp.endpoint = Some("localhost:4317".into());
        assert!(error(c).contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let mut c = base();
        c.sampler = Sampler::TraceIdRatio;
        c.sampler_arg = Some(1.5);
        assert_eq!(
            error(c),
            "invalid value `1.5` for export.sampler_arg (OTEL_TRACES_SAMPLER_ARG): expected a ratio from 0 to 1"
        );
        let mut c = base();
        c.traces_exporter = Some("zipkin".into());
        assert!(error(c).contains("expected one of otlp, console, none"));
    }

    #[test]
    fn credentials_are_masked_in_errors_and_debug() {
        let mut c = ExportConfig::default();
        c.otlp.endpoint = Some("http://user:Zqpassword@collector:bad".into());
        let message = error(c.clone());
        assert!(message.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{message}");
        assert!(
            message.contains("http://user:***@collector:bad"),
            "{message}"
        );
        assert!(!message.contains("Zqpassword"), "{message}");
        c.otlp
            .headers
            .insert("authorization".into(), "Bearer Zqtoken".into());
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("Zqtoken") && !debug.contains("Zqpassword"),
            "{debug}"
        );
        assert!(debug.contains("authorization"), "{debug}");
        let sink = ResolvedSink::Otlp {
            protocol: "grpc",
            endpoint: "http://u:Zqpassword@h:4317".into(),
        };
        assert!(!format!("{sink:?}").contains("Zqpassword"));
    }

    #[test]
    fn sink_resolution() {
        let mut c = ExportConfig::default();
        assert!(matches!(
            resolve(&c).map(|p| p.sink),
            Ok(ResolvedSink::File(_))
        ));
        c.otlp.endpoint = Some("http://127.0.0.1:4318".into());
        assert!(matches!(
            resolve(&c).map(|p| p.sink),
            Ok(ResolvedSink::Otlp { endpoint, .. }) if endpoint == "http://127.0.0.1:4318/v1/traces"
        ));
        c.traces_exporter = Some("console".into());
        assert_eq!(
            resolve(&c).map(|p| p.sink).ok(),
            Some(ResolvedSink::Console)
        );
        c.sdk_disabled = true;
        assert_eq!(
            resolve(&c).map(|p| (p.sink, p.console_summary)).ok(),
            Some((ResolvedSink::None, false))
        );
    }
}
