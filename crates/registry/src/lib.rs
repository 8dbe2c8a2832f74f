//! `dftrace-registry`: the configuration, presets and plugin registry that
//! every dftrace crate plugs into.
//!
//! A host builds one [`DftraceConfig`] (a preset plus file, environment and
//! code layers), then applies every linked dftrace plugin to its own
//! DataFusion `SessionStateBuilder` with one call, and finishes with one call
//! that builds the state:
//!
//! ```
//! use datafusion::execution::SessionStateBuilder;
//! use datafusion::prelude::SessionContext;
//! use dftrace_registry::{DftraceConfig, Preset, RegistryStateBuilderExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = DftraceConfig::builder()
//!     .preset(Preset::MaximalNoData)
//!     // The TOML a host would keep in a file (or name in DFTRACE_CONFIG).
//!     .toml_str("")
//!     // DFTRACE_* and OTEL_* variables override the file.
//!     .env(std::env::vars())
//!     .build()?;
//!
//! let state = SessionStateBuilder::new()
//!     .with_default_features()
//!     .with_dftrace(&config)?
//!     .build_dftrace()?;
//! let ctx = SessionContext::new_with_state(state);
//! let batches = ctx.sql("SELECT 1 AS one").await?.collect().await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Plugins
//!
//! Component crates (`dftrace-rules`, `dftrace-preview-redaction`, ...) each
//! register one [`Plugin`] through [`inventory`], owning one typed config
//! [`Section`]. A plugin crate that no Rust code references is not linked, so
//! its registration never runs: a host binary that relies on link-time
//! registration must reference each plugin crate, e.g. `use dftrace_rules as _;`.
//!
//! Plugins run sorted by [`Stage`], then by name. Builder hooks run in
//! [`RegistryStateBuilderExt::with_dftrace`]; state hooks (which need the built
//! state, e.g. planner rule wrapping) run in
//! [`RegistryStateBuilderExt::build_dftrace`], after the `Instrument` rule has
//! been moved to the end of the physical optimizer chain.
//!
//! # Feature flags
//!
//! - `session` (default): the DataFusion side — plugin hooks, the
//!   `SessionStateBuilder` extension and the services plugins share. Without
//!   it the crate is only the config layer (no DataFusion dependency), which
//!   is what `dftrace-bootstrap` uses.
//!
//! # Configuration
//!
//! See [`config`] for the layers and their precedence. A config section for a
//! plugin that is not linked is an error listing the linked plugins; every bad
//! value is an error naming the field, the value, where it came from and what
//! is accepted.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
mod environment;
mod error;
#[cfg(feature = "session")]
mod hooks;
mod int_value;
pub mod keys;
pub mod literals;
mod memory;
#[cfg(feature = "session")]
mod metrics_once;
mod operator_scope;
mod pending;
mod plugin;
#[cfg(feature = "session")]
mod query_state;
mod running;
pub mod secrets;
mod section_owners;
#[cfg(feature = "session")]
mod session;
mod span_level;

pub use config::{ConfigBuilder, DftraceConfig, EnvAlias, Preset, Section};
#[cfg(feature = "session")]
#[cfg_attr(docsrs, doc(cfg(feature = "session")))]
pub use error::RegistryError;
pub use error::{ConfigError, Result};
#[cfg(feature = "session")]
#[cfg_attr(docsrs, doc(cfg(feature = "session")))]
pub use hooks::{
    BuilderHook, ColumnSources, OperatorAttributes, OperatorFigures, PluginContext, PreviewFn,
    PreviewFormatter, QueryEnd, QueryObserver, RanOperator, Services, SourcedPreviewFn, Spread,
    StateHook, builder_runtime_env,
};
pub use int_value::saturating_i64;
pub use memory::QueryMemory;
#[cfg(feature = "session")]
#[cfg_attr(docsrs, doc(cfg(feature = "session")))]
pub use metrics_once::{node_metrics, read_metrics_once};
pub use operator_scope::{OperatorKey, OperatorScope, current_operator, enter_operator};
pub use pending::{Flush, flush_pending_work, register_pending_work};
pub use plugin::{Plugin, Stage, linked_plugins};
#[cfg(feature = "session")]
#[cfg_attr(docsrs, doc(cfg(feature = "session")))]
pub use query_state::{current_query_state, query_state, set_query_state};
pub use running::{
    InFlight, QueryPhase, RunningEntry, RunningOperator, RunningQueries, RunningQuery,
    RunningSnapshot, queries_in_flight,
};
#[cfg(feature = "session")]
#[cfg_attr(docsrs, doc(cfg(feature = "session")))]
pub use session::{DftraceSession, INSTRUMENT_RULE_NAME, RegistryStateBuilderExt};
pub use span_level::SpanLevel;

pub use keys::{QUERY_SPAN_NAME, UNSAMPLED_FIELD};

/// Re-exported so plugin crates register with the same `inventory` version
/// the registry collects with.
pub use inventory;
