//! `dftrace-object-store-registry`: every storage request of a DataFusion
//! session as a span under its query.
//!
//! [`instrument_registry`] wraps any `ObjectStoreRegistry` so that every store
//! it hands out — registered before it was installed (DataFusion pre-registers
//! `file://`), registered later (including the stores `datafusion-cli`
//! registers on the fly for `s3://` tables), or built by it (`auto_build`) —
//! goes through `instrumented-object-store` exactly once. Each request's bytes
//! are added to the enclosing query's counters ([`query_storage_totals`]),
//! and a failed request marks its span as an error while the error itself
//! passes through unchanged.
//!
//! ```
//! use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
//! use dftrace_object_store_registry::{ObjectStoreConfig, instrument_registry};
//! use std::sync::Arc;
//! use url::Url;
//!
//! let registry = instrument_registry(
//!     Arc::new(DefaultObjectStoreRegistry::new()),
//!     &ObjectStoreConfig::default(),
//! );
//! // `file://` was registered before the wrapper; it comes back traced.
//! let store = registry.get_store(&Url::parse("file:///").unwrap()).unwrap();
//! assert!(format!("{store}").contains("file"));
//!
//! // A scheme nobody serves fails fast, naming the scheme.
//! let error = registry.get_store(&Url::parse("ftp://host/x").unwrap()).unwrap_err();
//! assert!(error.to_string().contains("`ftp`"));
//! ```
//!
//! With the default `registry` feature the crate registers the
//! `object_store` plugin, which installs the wrapper in the session's runtime
//! environment.
//!
//! # Feature flags
//!
//! - `registry` (default): register the plugin with `dftrace-registry`.
//! - `aws`, `gcp`, `azure`, `http`: let `auto_build` build stores for those
//!   schemes (`object_store`'s features of the same names). Registering stores
//!   built by the host needs none of them.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod counting;
mod registry;

pub use config::{ObjectStoreConfig, SUPPORTED_SCHEMES};
pub use counting::{StorageTotals, query_storage_totals};
pub use registry::{StoreError, instrument_registry};

#[cfg(feature = "registry")]
mod plugin {
    use crate::{ObjectStoreConfig, instrument_registry};
    use datafusion::execution::SessionStateBuilder;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use dftrace_registry::{Plugin, PluginContext, Stage};
    use std::sync::Arc;

    fn on_builder(
        mut builder: SessionStateBuilder,
        context: &mut PluginContext<'_>,
    ) -> datafusion::error::Result<SessionStateBuilder> {
        let config: ObjectStoreConfig = context.section()?;
        if !config.enabled {
            return Ok(builder);
        }
        let runtime = dftrace_registry::builder_runtime_env(&mut builder);
        let registry = instrument_registry(Arc::clone(&runtime.object_store_registry), &config);
        let runtime = RuntimeEnvBuilder::from_runtime_env(&runtime)
            .with_object_store_registry(registry)
            .build_arc()?;
        Ok(builder.with_runtime_env(runtime))
    }

    dftrace_registry::inventory::submit! {
        Plugin::new::<ObjectStoreConfig>(Stage::Environment).on_builder(on_builder)
    }
}
