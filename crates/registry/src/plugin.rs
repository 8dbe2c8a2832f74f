//! The plugin type that component crates register through `inventory`.

use crate::config::{DftraceConfig, EnvAlias, Preset, Section};
use crate::error::Result;
#[cfg(feature = "session")]
use crate::hooks::{BuilderHook, StateHook};
use std::fmt;

/// When a plugin's hooks run relative to other plugins'. Plugins run sorted by
/// stage, then by name, because `inventory`'s order is unspecified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Config-only plugins (e.g. the `[export]` section of the bootstrap), and
    /// changes to the runtime environment such as object store registries.
    Environment,
    /// Plugins that provide services to later plugins through [`Services`](crate::Services)
    /// (e.g. the redacting preview formatter).
    Services,
    /// Plugins that install instrumentation (optimizer rules, planner wrappers).
    Instrumentation,
    /// Plugins that observe queries after they run (summaries, metrics).
    Observation,
}

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
    defaults: fn(Preset) -> serde_json::Value,
    env_aliases: &'static [EnvAlias],
    #[cfg(feature = "session")]
    builder_hook: Option<BuilderHook>,
    #[cfg(feature = "session")]
    state_hook: Option<StateHook>,
}

impl Plugin {
    /// A plugin owning section `S`, running at `stage`, with no hooks yet.
    pub const fn new<S: Section>(stage: Stage) -> Self {
        Plugin {
            name: S::NAME,
            stage,
            check: check_section::<S>,
            defaults: section_defaults::<S>,
            env_aliases: S::ENV_ALIASES,
            #[cfg(feature = "session")]
            builder_hook: None,
            #[cfg(feature = "session")]
            state_hook: None,
        }
    }

    /// Adds a hook on the `SessionStateBuilder`.
    #[cfg(feature = "session")]
    #[must_use]
    pub const fn on_builder(mut self, hook: BuilderHook) -> Self {
        self.builder_hook = Some(hook);
        self
    }

    /// Adds a hook on the built `SessionState`.
    #[cfg(feature = "session")]
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

    /// The section's values under `preset`, serialized (the configuration
    /// reference is generated from this, so it cannot drift from the types).
    pub fn defaults(&self, preset: Preset) -> serde_json::Value {
        (self.defaults)(preset)
    }

    /// The standard variables that also set fields of this section.
    pub fn env_aliases(&self) -> &'static [EnvAlias] {
        self.env_aliases
    }

    #[cfg(feature = "session")]
    pub(crate) fn builder_hook(&self) -> Option<BuilderHook> {
        self.builder_hook
    }

    #[cfg(feature = "session")]
    pub(crate) fn state_hook(&self) -> Option<StateHook> {
        self.state_hook
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("stage", &self.stage)
            .finish()
    }
}

fn check_section<S: Section>(config: &DftraceConfig) -> Result<()> {
    config.section::<S>().map(drop)
}

fn section_defaults<S: Section>(preset: Preset) -> serde_json::Value {
    // A section that cannot serialize its own defaults is a bug in that
    // section; show it in the reference instead of panicking.
    serde_json::to_value(S::for_preset(preset))
        .unwrap_or_else(|error| serde_json::Value::String(format!("<unserializable: {error}>")))
}

inventory::collect!(Plugin);

/// Every plugin linked into this program, sorted by stage, then name.
pub fn linked_plugins() -> Vec<&'static Plugin> {
    let mut plugins: Vec<&'static Plugin> = inventory::iter::<Plugin>.into_iter().collect();
    plugins.sort_by_key(|plugin| (plugin.stage, plugin.name));
    plugins
}
