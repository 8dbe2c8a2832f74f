//! The `[history]` config section.

use dftrace_registry::{Preset, Section};
use serde::{Deserialize, Serialize};

/// Query history settings: the `[history]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keep recent queries and register the `dftrace.*` tables. Off in every
    /// preset (the traced `datafusion-cli` turns it on unless told
    /// otherwise).
    pub enabled: bool,
    /// Queries kept; the oldest goes first.
    pub max_queries: usize,
    /// Bytes the kept queries may hold (estimated from their fields); the
    /// oldest go first when a new one would exceed it.
    pub max_bytes: usize,
    /// What `dftrace.spans` reads: a directory (its `*.jsonl` files), a file
    /// or a glob. The file sink's default directory by default.
    pub spans_path: String,
    /// Record OpenTelemetry metrics per operator name:
    /// `dftrace.operator.self_time` and `dftrace.operator.output_rows`.
    pub operator_metrics: bool,
}

impl Section for HistoryConfig {
    const NAME: &'static str = "history";

    fn for_preset(_preset: Preset) -> Self {
        HistoryConfig {
            enabled: false,
            max_queries: 100,
            max_bytes: 16 * 1024 * 1024,
            spans_path: "dftrace-traces".to_owned(),
            operator_metrics: false,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self::for_preset(Preset::default())
    }
}
