//! The `[export]` config section, with the standard OpenTelemetry variables.

use dftrace_registry::{EnvAlias, Preset, Section};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    /// OTLP when an endpoint is configured, else `file`.
    Auto,
    /// OTLP to a collector (`otlp.protocol`).
    Otlp,
    /// OTLP-JSON lines in a local file (`file.dir`, `file.path`).
    File,
    /// Only the console summary of each query on stderr.
    Console,
    /// Nothing.
    None,
}

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// gRPC (default port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// HTTP with binary protobuf (default port 4318); the specification's
    /// default.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// HTTP with JSON (default port 4318).
    #[serde(rename = "http/json")]
    HttpJson,
}

/// OTLP payload compression (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
}

/// The head sampler (`export.sampler`, `OTEL_TRACES_SAMPLER`), with the
/// specification's names; the ratio samplers take their ratio from
/// `export.sampler_arg` (`OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sampler {
    /// Sample everything.
    #[serde(rename = "always_on")]
    AlwaysOn,
    /// Sample nothing.
    #[serde(rename = "always_off")]
    AlwaysOff,
    /// Sample a fraction (`sampler_arg`) of traces by trace id.
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    /// Follow the parent's decision; sample roots.
    #[serde(rename = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    /// Follow the parent's decision; drop roots.
    #[serde(rename = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    /// Follow the parent's decision; sample a fraction (`sampler_arg`) of
    /// roots.
    #[serde(rename = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
}

/// Human log output on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// No log layer.
    None,
    /// One compact line per event.
    Compact,
    /// One JSON object per event.
    Json,
}

/// OTLP exporter settings: `[export.otlp]`. Its `Debug` output masks header
/// values and the passwords of endpoints' user info.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`): used as given for gRPC;
    /// `/v1/traces` (and `/v1/metrics`) is appended for HTTP. Default: unset
    /// (`http://localhost:4317` for gRPC, `http://localhost:4318` for HTTP).
    pub endpoint: Option<String>,
    /// Traces endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), used as given.
    /// Default: unset.
    pub traces_endpoint: Option<String>,
    /// Metrics endpoint (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), used as given.
    /// Default: unset.
    pub metrics_endpoint: Option<String>,
    /// Transport (`OTEL_EXPORTER_OTLP_PROTOCOL`). Default: `http/protobuf`.
    pub protocol: Protocol,
    /// Extra headers / gRPC metadata (`OTEL_EXPORTER_OTLP_HEADERS`, as
    /// `k=v,k2=v2`). Default: none.
    pub headers: BTreeMap<String, String>,
    /// Per-export timeout in milliseconds (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    /// Default: 10000.
    pub timeout_ms: u64,
    /// Compression (`OTEL_EXPORTER_OTLP_COMPRESSION`): `none` or `gzip`.
    /// Default: `none`.
    pub compression: Compression,
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use dftrace_registry::secrets::{SECRET_MASK, shown_url};
        let url = |url: &Option<String>| url.as_deref().map(shown_url);
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|key| (key.as_str(), SECRET_MASK))
            .collect();
        f.debug_struct("OtlpConfig")
            .field("endpoint", &url(&self.endpoint))
            .field("traces_endpoint", &url(&self.traces_endpoint))
            .field("metrics_endpoint", &url(&self.metrics_endpoint))
            .field("protocol", &self.protocol)
            .field("headers", &headers)
            .field("timeout_ms", &self.timeout_ms)
            .field("compression", &self.compression)
            .finish()
    }
}

/// Batch span processor settings: `[export.batch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Spans held before new ones are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`),
    /// 1 to 1000000. Default: 2048.
    pub max_queue_size: usize,
    /// Spans per export (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`), at most the queue
    /// size. Default: 512.
    pub max_export_batch_size: usize,
    /// Delay between exports in milliseconds (`OTEL_BSP_SCHEDULE_DELAY`).
    /// Default: 5000.
    pub schedule_delay_ms: u64,
    /// Longest one export may take in milliseconds (`OTEL_BSP_EXPORT_TIMEOUT`);
    /// bounds the OTLP exporter's own timeout. Default: 30000.
    pub export_timeout_ms: u64,
}

/// File sink settings: `[export.file]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Folder for `trace-<time>-<pid>.jsonl` files (created if missing).
    /// Variable: `DFTRACE_EXPORT__FILE__DIR`. Default: `dftrace-traces`.
    pub dir: String,
    /// A fixed file path instead (appended to). Variable:
    /// `DFTRACE_EXPORT__FILE__PATH`. Default: unset.
    pub path: Option<String>,
}

/// Telemetry export settings: the `[export]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Where spans go (`DFTRACE_EXPORT__SINK`). Default: `auto`.
    pub sink: Sink,
    /// `OTEL_TRACES_EXPORTER`: `otlp`, `console` or `none`; overrides `sink`.
    /// Default: unset.
    pub traces_exporter: Option<String>,
    /// `OTEL_SDK_DISABLED`: turns all telemetry off. Default: `false`.
    pub sdk_disabled: bool,
    /// `service.name` (`OTEL_SERVICE_NAME`). Default: `dftrace`.
    pub service_name: String,
    /// `service.version` (`DFTRACE_EXPORT__SERVICE_VERSION`). Default: unset.
    pub service_version: Option<String>,
    /// Resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, as `k=v,k2=v2`).
    /// Default: none.
    pub resource_attributes: BTreeMap<String, String>,
    /// The `tracing` filter directives of what is exported
    /// (`DFTRACE_EXPORT__FILTER`), and of the log layer when `log_filter` is
    /// unset. Default: `info`.
    pub filter: String,
    /// The filter directives of the log layer alone (`RUST_LOG`, as for
    /// every other program; `DFTRACE_EXPORT__LOG_FILTER`); never what is
    /// exported. Default: unset (the log layer follows `filter`).
    pub log_filter: Option<String>,
    /// Human log output on stderr (`DFTRACE_EXPORT__LOG_FORMAT`): `none`,
    /// `compact` or `json`. Default: `none`.
    pub log_format: LogFormat,
    /// Print one summary line per finished query on stderr
    /// (`DFTRACE_EXPORT__CONSOLE_SUMMARY`). Default: `false`.
    pub console_summary: bool,
    /// Head sampler (`OTEL_TRACES_SAMPLER`). Default: `parentbased_always_on`.
    pub sampler: Sampler,
    /// Sampler argument (`OTEL_TRACES_SAMPLER_ARG`): the ratio, 0 to 1.
    /// Default: unset (1.0 for the ratio samplers).
    pub sampler_arg: Option<f64>,
    /// Make each span's OpenTelemetry context current while its `tracing`
    /// span is entered (`DFTRACE_EXPORT__CONTEXT_ACTIVATION`), for other
    /// OpenTelemetry instrumentation in the host that reads
    /// `opentelemetry::Context::current()`. Operator spans are entered on
    /// every poll, so this costs on every batch; dftrace's own spans find
    /// their parents through `tracing` and do not need it. Default: `false`.
    pub context_activation: bool,
    /// Longest shutdown may take, in milliseconds; spans not exported by
    /// then are counted as dropped (`DFTRACE_EXPORT__SHUTDOWN_TIMEOUT_MS`).
    /// Default: 5000.
    pub shutdown_timeout_ms: u64,
    /// Longest string attribute value exported, in bytes
    /// (`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`); a longer value is cut on a
    /// character boundary and ends with `…[truncated N bytes]`. Plans with
    /// large literals make plan attributes megabytes long, and collectors
    /// reject oversized requests (a whole batch lost for one span), so the
    /// default is bounded: 16384. 0 = no limit.
    pub attribute_value_length_limit: usize,
    /// Export OpenTelemetry metrics (OTLP and file sinks) every this many
    /// milliseconds (`OTEL_METRIC_EXPORT_INTERVAL`); shutdown exports the
    /// rest. Default: 60000.
    pub metric_export_interval_ms: u64,
    /// OTLP settings.
    pub otlp: OtlpConfig,
    /// Batch span processor settings.
    pub batch: BatchConfig,
    /// File sink settings.
    pub file: FileConfig,
}

impl Section for ExportConfig {
    const NAME: &'static str = "export";
    const ENV_ALIASES: &'static [EnvAlias] = &[
        EnvAlias {
            var: "OTEL_TRACES_EXPORTER",
            field: "traces_exporter",
        },
        EnvAlias {
            var: "OTEL_SDK_DISABLED",
            field: "sdk_disabled",
        },
        EnvAlias {
            var: "OTEL_SERVICE_NAME",
            field: "service_name",
        },
        EnvAlias {
            var: "OTEL_RESOURCE_ATTRIBUTES",
            field: "resource_attributes",
        },
        EnvAlias {
            var: "RUST_LOG",
            field: "log_filter",
        },
        EnvAlias {
            var: "OTEL_TRACES_SAMPLER",
            field: "sampler",
        },
        EnvAlias {
            var: "OTEL_TRACES_SAMPLER_ARG",
            field: "sampler_arg",
        },
        EnvAlias {
            var: "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            field: "attribute_value_length_limit",
        },
        EnvAlias {
            var: "OTEL_METRIC_EXPORT_INTERVAL",
            field: "metric_export_interval_ms",
        },
        EnvAlias {
            var: "OTEL_EXPORTER_OTLP_ENDPOINT",
            field: "otlp.endpoint",
        },
        EnvAlias {
            var: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            field: "otlp.traces_endpoint",
        },
        EnvAlias {
            var: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            field: "otlp.metrics_endpoint",
        },
        EnvAlias {
            var: "OTEL_EXPORTER_OTLP_PROTOCOL",
            field: "otlp.protocol",
        },
        EnvAlias {
            var: "OTEL_EXPORTER_OTLP_HEADERS",
            field: "otlp.headers",
        },
        EnvAlias {
            var: "OTEL_EXPORTER_OTLP_TIMEOUT",
            field: "otlp.timeout_ms",
        },
        EnvAlias {
            var: "OTEL_EXPORTER_OTLP_COMPRESSION",
            field: "otlp.compression",
        },
        EnvAlias {
            var: "OTEL_BSP_MAX_QUEUE_SIZE",
            field: "batch.max_queue_size",
        },
        EnvAlias {
            var: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            field: "batch.max_export_batch_size",
        },
        EnvAlias {
            var: "OTEL_BSP_SCHEDULE_DELAY",
            field: "batch.schedule_delay_ms",
        },
        EnvAlias {
            var: "OTEL_BSP_EXPORT_TIMEOUT",
            field: "batch.export_timeout_ms",
        },
    ];

    fn for_preset(_preset: Preset) -> Self {
        // Export policy is the same in every preset; presets choose what is
        // recorded, not where it goes. Defaults follow the specification.
        ExportConfig {
            sink: Sink::Auto,
            traces_exporter: None,
            sdk_disabled: false,
            service_name: "dftrace".to_owned(),
            service_version: None,
            resource_attributes: BTreeMap::new(),
            filter: "info".to_owned(),
            log_filter: None,
            log_format: LogFormat::None,
            console_summary: false,
            sampler: Sampler::ParentBasedAlwaysOn,
            sampler_arg: None,
            context_activation: false,
            shutdown_timeout_ms: 5_000,
            attribute_value_length_limit: 16_384,
            metric_export_interval_ms: 60_000,
            otlp: OtlpConfig {
                endpoint: None,
                traces_endpoint: None,
                metrics_endpoint: None,
                protocol: Protocol::HttpProtobuf,
                headers: BTreeMap::new(),
                timeout_ms: 10_000,
                compression: Compression::None,
            },
            batch: BatchConfig {
                max_queue_size: 2_048,
                max_export_batch_size: 512,
                schedule_delay_ms: 5_000,
                export_timeout_ms: 30_000,
            },
            file: FileConfig {
                dir: "dftrace-traces".to_owned(),
                path: None,
            },
        }
    }
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self::for_preset(Preset::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dftrace_registry::DftraceConfig;
    use serde_json::{Value, json};

    /// For every standard variable: the file overrides the preset, and the
    /// variable overrides the file.
    #[test]
    fn each_variable_overrides_the_file_which_overrides_the_preset() {
        // (variable, field path, file value as TOML, env value, expected JSON after env)
        let cases: &[(&str, &str, &str, &str, Value)] = &[
            (
                "OTEL_TRACES_EXPORTER",
                "traces_exporter",
                "\"otlp\"",
                "console",
                json!("console"),
            ),
            (
                "OTEL_SDK_DISABLED",
                "sdk_disabled",
                "true",
                "false",
                json!(false),
            ),
            (
                "OTEL_SERVICE_NAME",
                "service_name",
                "\"from-file\"",
                "from-env",
                json!("from-env"),
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "resource_attributes",
                "{ a = \"file\" }",
                "a=env,b=2",
                json!({"a": "env", "b": "2"}),
            ),
            (
                "OTEL_TRACES_SAMPLER",
                "sampler",
                "\"always_off\"",
                "parentbased_traceidratio",
                json!("parentbased_traceidratio"),
            ),
            (
                "OTEL_TRACES_SAMPLER_ARG",
                "sampler_arg",
                "0.25",
                "0.75",
                json!(0.75),
            ),
            (
                "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                "attribute_value_length_limit",
                "100",
                "4096",
                json!(4096),
            ),
            (
                "OTEL_METRIC_EXPORT_INTERVAL",
                "metric_export_interval_ms",
                "1000",
                "2000",
                json!(2000),
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "otlp.endpoint",
                "\"http://file:4318\"",
                "http://env:4318",
                json!("http://env:4318"),
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "otlp.traces_endpoint",
                "\"http://file/t\"",
                "http://env/t",
                json!("http://env/t"),
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "otlp.metrics_endpoint",
                "\"http://file/m\"",
                "http://env/m",
                json!("http://env/m"),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "otlp.protocol",
                "\"grpc\"",
                "http/json",
                json!("http/json"),
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "otlp.headers",
                "{ k = \"file\" }",
                "k=env%20value",
                json!({"k": "env value"}),
            ),
            (
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "otlp.timeout_ms",
                "1000",
                "2500",
                json!(2500),
            ),
            (
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "otlp.compression",
                "\"gzip\"",
                "none",
                json!("none"),
            ),
            (
                "OTEL_BSP_MAX_QUEUE_SIZE",
                "batch.max_queue_size",
                "100",
                "4096",
                json!(4096),
            ),
            (
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                "batch.max_export_batch_size",
                "10",
                "64",
                json!(64),
            ),
            (
                "OTEL_BSP_SCHEDULE_DELAY",
                "batch.schedule_delay_ms",
                "100",
                "250",
                json!(250),
            ),
            (
                "OTEL_BSP_EXPORT_TIMEOUT",
                "batch.export_timeout_ms",
                "100",
                "900",
                json!(900),
            ),
            (
                "RUST_LOG",
                "log_filter",
                "\"warn\"",
                "my_service=debug",
                json!("my_service=debug"),
            ),
        ];
        assert_eq!(
            cases.len(),
            ExportConfig::ENV_ALIASES.len(),
            "every alias has a case"
        );
        let get = |config: &ExportConfig, path: &str| {
            let mut value = serde_json::to_value(config).unwrap_or_default();
            for segment in path.split('.') {
                value = value[segment].take();
            }
            value
        };
        for (var, field, file_value, env_value, expected) in cases {
            assert!(
                ExportConfig::ENV_ALIASES
                    .iter()
                    .any(|a| a.var == *var && a.field == *field),
                "{var}"
            );
            let (table, key) = match field.split_once('.') {
                Some((table, key)) => (format!("[export.{table}]"), key.to_owned()),
                None => ("[export]".to_owned(), (*field).to_owned()),
            };
            let file = format!("{table}\n{key} = {file_value}\n");
            let preset = ExportConfig::default();
            let from_file = DftraceConfig::builder()
                .toml_str(file.clone())
                .build()
                .and_then(|c| c.section::<ExportConfig>());
            let from_file = from_file.unwrap_or_else(|e| panic!("{var}: {e}"));
            assert_ne!(
                get(&from_file, field),
                get(&preset, field),
                "{var}: the file changes the preset value"
            );
            let from_env = DftraceConfig::builder()
                .toml_str(file)
                .env([(*var, *env_value)])
                .build()
                .and_then(|c| c.section::<ExportConfig>())
                .unwrap_or_else(|e| panic!("{var}: {e}"));
            assert_eq!(&get(&from_env, field), expected, "{var} overrides the file");
        }
    }
}
