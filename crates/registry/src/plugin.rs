//! The plugin type that component crates register through `inventory`.

use crate::config::{DftraceConfig, Section};
use crate::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// When a plugin's hooks run relative to other plugins'. Plugins run sorted by
/// stage, then by name, because `inventory`'s order is unspecified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Config-only plugins (e.g. the `[export]` section of the bootstrap), and
    /// changes to the runtime environment such as object store registries.
    Environment,
    /// Plugins that provide services to later plugins through [`Services`]
    /// (e.g. the redacting preview formatter).
    Services,
    /// Plugins that install instrumentation (optimizer rules, planner wrappers).
    Instrumentation,
    /// Plugins that observe queries after they run (summaries, metrics).
    Observation,
}

/// A hook on the `SessionStateBuilder`, before the state is built.
pub type BuilderHook = fn(
    SessionStateBuilder,
    &mut PluginContext<'_>,
) -> datafusion::error::Result<SessionStateBuilder>;

/// A hook on the built `SessionState` (planner rule wrapping needs the state).
pub type StateHook =
    fn(SessionState, &mut PluginContext<'_>) -> datafusion::error::Result<SessionState>;

/// A dftrace plugin: a config section plus optional hooks.
///
/// Register one with `inventory::submit!` in the crate that owns the section:
///
/// ```
/// use dftrace_registry::{Plugin, Preset, Section, Stage};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct HelloConfig { greeting: String }
///
/// impl Section for HelloConfig {
///     const NAME: &'static str = "hello";
///     fn for_preset(_: Preset) -> Self { HelloConfig { greeting: "hi".into() } }
/// }
///
/// dftrace_registry::inventory::submit! {
///     Plugin::new::<HelloConfig>(Stage::Observation)
/// }
/// ```
pub struct Plugin {
    name: &'static str,
    stage: Stage,
    check: fn(&DftraceConfig) -> Result<()>,
    builder_hook: Option<BuilderHook>,
    state_hook: Option<StateHook>,
}

impl Plugin {
    /// A plugin owning section `S`, running at `stage`, with no hooks yet.
    pub const fn new<S: Section>(stage: Stage) -> Self {
        Plugin {
            name: S::NAME,
            stage,
            check: check_section::<S>,
            builder_hook: None,
            state_hook: None,
        }
    }

    /// Adds a hook on the `SessionStateBuilder`.
    #[must_use]
    pub const fn on_builder(mut self, hook: BuilderHook) -> Self {
        self.builder_hook = Some(hook);
        self
    }

    /// Adds a hook on the built `SessionState`.
    #[must_use]
    pub const fn on_state(mut self, hook: StateHook) -> Self {
        self.state_hook = Some(hook);
        self
    }

    /// The plugin's name (its section's name).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The plugin's stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Resolves the plugin's section in `config`, so a bad value fails early.
    pub fn check(&self, config: &DftraceConfig) -> Result<()> {
        (self.check)(config)
    }

    pub(crate) fn builder_hook(&self) -> Option<BuilderHook> {
        self.builder_hook
    }

    pub(crate) fn state_hook(&self) -> Option<StateHook> {
        self.state_hook
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("stage", &self.stage)
            .field("builder_hook", &self.builder_hook.is_some())
            .field("state_hook", &self.state_hook.is_some())
            .finish()
    }
}

fn check_section<S: Section>(config: &DftraceConfig) -> Result<()> {
    config.section::<S>().map(drop)
}

inventory::collect!(Plugin);

/// Every plugin linked into this program, sorted by stage, then name.
pub fn linked_plugins() -> Vec<&'static Plugin> {
    let mut plugins: Vec<&'static Plugin> = inventory::iter::<Plugin>.into_iter().collect();
    plugins.sort_by_key(|plugin| (plugin.stage, plugin.name));
    plugins
}

/// Shared values that plugins hand to each other (and to the host) by type:
/// an earlier-stage plugin inserts, a later one reads.
#[derive(Default, Clone)]
pub struct Services {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Services {
    /// Stores `value`, replacing any earlier value of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: Arc<T>) {
        self.values.insert(TypeId::of::<T>(), value);
    }

    /// The value of type `T`, if a plugin provided one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|value| value.downcast().ok())
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("count", &self.values.len())
            .finish()
    }
}

/// What a hook sees: the config and the services of the session being built.
#[derive(Debug)]
pub struct PluginContext<'a> {
    config: &'a DftraceConfig,
    services: &'a mut Services,
}

impl<'a> PluginContext<'a> {
    pub(crate) fn new(config: &'a DftraceConfig, services: &'a mut Services) -> Self {
        PluginContext { config, services }
    }

    /// The configuration being applied.
    pub fn config(&self) -> &DftraceConfig {
        self.config
    }

    /// The typed section `S` of the configuration, as a DataFusion error on
    /// failure so hooks can use `?`.
    pub fn section<S: Section>(&self) -> datafusion::error::Result<S> {
        self.config
            .section::<S>()
            .map_err(|error| datafusion::error::DataFusionError::External(Box::new(error)))
    }

    /// The services plugins provide to each other.
    pub fn services(&mut self) -> &mut Services {
        self.services
    }
}

/// The signature of a row-preview formatter, as `datafusion-tracing` calls it.
pub type PreviewFn = dyn Fn(
        &datafusion::arrow::record_batch::RecordBatch,
    ) -> std::result::Result<String, datafusion::arrow::error::ArrowError>
    + Send
    + Sync;

/// The service a preview plugin provides (e.g. `dftrace-preview-redaction`'s
/// redacting formatter) and the rules plugin uses for operator previews.
#[derive(Clone)]
pub struct PreviewFormatter(pub Arc<PreviewFn>);

impl fmt::Debug for PreviewFormatter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreviewFormatter(..)")
    }
}
