//! Typed code overrides for the common `[export]` settings, on the
//! registry's [`ConfigBuilder`]; every other field stays reachable with
//! [`ConfigBuilder::set`].

use crate::config::{ExportConfig, Protocol, Sampler, Sink};
use dftrace_registry::ConfigBuilder;

/// Typed setters for `[export]` on a [`ConfigBuilder`] (the code layer, so
/// they win over the preset, the file and the environment). Values are
/// checked when the section is read, like every other layer's.
pub trait ExportOverrides: Sized {
    /// `export.sink`.
    fn sink(self, sink: Sink) -> Self;
    /// `export.service_name` (the `service.name` resource attribute).
    fn service_name(self, name: impl Into<String>) -> Self;
    /// `export.otlp.endpoint`, the collector's base URL.
    fn otlp_endpoint(self, endpoint: impl Into<String>) -> Self;
    /// `export.otlp.protocol`.
    fn otlp_protocol(self, protocol: Protocol) -> Self;
    /// `export.sampler`.
    fn sampler(self, sampler: Sampler) -> Self;
    /// `export.sampler_arg`: the ratio (0 to 1) of the ratio samplers.
    fn sampler_arg(self, ratio: f64) -> Self;
}

impl ExportOverrides for ConfigBuilder {
    fn sink(self, sink: Sink) -> Self {
        self.set_field::<ExportConfig, _>("sink", sink)
    }

    fn service_name(self, name: impl Into<String>) -> Self {
        self.set_field::<ExportConfig, _>("service_name", name.into())
    }

    fn otlp_endpoint(self, endpoint: impl Into<String>) -> Self {
        self.set_field::<ExportConfig, _>("otlp.endpoint", endpoint.into())
    }

    fn otlp_protocol(self, protocol: Protocol) -> Self {
        self.set_field::<ExportConfig, _>("otlp.protocol", protocol)
    }

    fn sampler(self, sampler: Sampler) -> Self {
        self.set_field::<ExportConfig, _>("sampler", sampler)
    }

    fn sampler_arg(self, ratio: f64) -> Self {
        self.set_field::<ExportConfig, _>("sampler_arg", ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dftrace_registry::DftraceConfig;

    #[test]
    fn typed_overrides_land_in_the_export_section_and_bad_values_name_the_field() {
        let config = DftraceConfig::builder()
            .sink(Sink::File)
            .service_name("billing")
            .otlp_endpoint("http://collector:4318")
            .otlp_protocol(Protocol::HttpJson)
            .sampler(Sampler::ParentBasedTraceIdRatio)
            .sampler_arg(0.25)
            .build()
            .and_then(|config| config.section::<ExportConfig>());
        let export = match config {
            Ok(export) => export,
            Err(error) => panic!("typed overrides rejected: {error}"),
        };
        assert_eq!(export.sink, Sink::File);
        assert_eq!(export.service_name, "billing");
        assert_eq!(
            export.otlp.endpoint.as_deref(),
            Some("http://collector:4318")
        );
        assert_eq!(export.otlp.protocol, Protocol::HttpJson);
        assert_eq!(export.sampler, Sampler::ParentBasedTraceIdRatio);
        assert_eq!(export.sampler_arg, Some(0.25));

        let ratio_too_high = DftraceConfig::builder()
            .sampler(Sampler::TraceIdRatio)
            .sampler_arg(1.5)
            .build()
            .and_then(|config| config.section::<ExportConfig>());
        let error = match ratio_too_high {
            Ok(export) => crate::settings::resolve(&export)
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default(),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains("sampler_arg") && error.contains("1.5"),
            "{error}"
        );
    }
}
