//! The `[udf]` config section.

use dftrace_registry::{Preset, Section};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Function observability settings: the `[udf]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdfConfig {
    /// Wrap the session's scalar, aggregate and window functions and record
    /// them per query. On in every preset (only the host's own functions,
    /// unless `include_builtin`).
    pub enabled: bool,
    /// Wrap DataFusion's built-in functions too. Off by default: there are
    /// hundreds, and the host rarely needs their figures.
    pub include_builtin: bool,
    /// `udf.version` per function name, e.g. `[udf.versions] score = "2.1.0"`.
    pub versions: BTreeMap<String, String>,
    /// Record OpenTelemetry metrics per function: `dftrace.udf.duration`
    /// (seconds per call), `dftrace.udf.rows` and `dftrace.udf.errors`.
    pub otel_metrics: bool,
}

impl Section for UdfConfig {
    const NAME: &'static str = "udf";

    fn for_preset(_preset: Preset) -> Self {
        UdfConfig {
            enabled: true,
            include_builtin: false,
            versions: BTreeMap::new(),
            otel_metrics: true,
        }
    }
}

impl Default for UdfConfig {
    fn default() -> Self {
        Self::for_preset(Preset::default())
    }
}
