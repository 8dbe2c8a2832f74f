//! The `[object_store]` config section.

use dftrace_registry::{Preset, Section};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every scheme this crate knows, in documentation order.
pub const SUPPORTED_SCHEMES: &[&str] = &[
    "file", "memory", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "azure", "http", "https",
];

/// Storage tracing settings: the `[object_store]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// Install the instrumenting registry. On in every preset.
    pub enabled: bool,
    /// Schemes the registry serves; a URL with another scheme fails fast.
    /// Default: every scheme in [`SUPPORTED_SCHEMES`].
    pub schemes: Vec<String>,
    /// Build a store for a URL nobody registered, from the URL, `options` and
    /// the usual environment credentials (`AWS_*`, `GOOGLE_*`, `AZURE_*`),
    /// through `object_store`'s own builders. Cloud schemes need the matching
    /// cargo feature (`aws`, `gcp`, `azure`, `http`). Off by default: hosts
    /// such as `datafusion-cli` register their own stores.
    pub auto_build: bool,
    /// Builder options per scheme, e.g. `[object_store.options.s3]
    /// aws_endpoint = "http://127.0.0.1:5000"`.
    pub options: BTreeMap<String, BTreeMap<String, String>>,
    /// Span name prefix per scheme (spans are named `<prefix>.<operation>`,
    /// e.g. `s3.get_opts`); a scheme without an entry uses its own name.
    pub span_prefix: BTreeMap<String, String>,
}

impl Section for ObjectStoreConfig {
    const NAME: &'static str = "object_store";

    fn for_preset(_preset: Preset) -> Self {
        ObjectStoreConfig {
            enabled: true,
            schemes: SUPPORTED_SCHEMES.iter().map(|s| (*s).to_owned()).collect(),
            auto_build: false,
            options: BTreeMap::new(),
            span_prefix: BTreeMap::new(),
        }
    }
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self::for_preset(Preset::default())
    }
}

impl ObjectStoreConfig {
    /// The span name prefix for `scheme`.
    pub fn prefix_for(&self, scheme: &str) -> String {
        self.span_prefix
            .get(scheme)
            .cloned()
            .unwrap_or_else(|| scheme.to_owned())
    }
}
