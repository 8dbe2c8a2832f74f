//! The host-facing extension on DataFusion's `SessionStateBuilder`.

use crate::config::DftraceConfig;
use crate::error::RegistryError;
use crate::hooks::{PluginContext, Services};
use crate::plugin::linked_plugins;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionConfig;
use std::sync::{Arc, Mutex, PoisonError};

/// The name of `datafusion-tracing`'s execution instrumentation rule, which
/// must run after every other physical optimizer rule so that no rule sees
/// (or rebuilds around) wrapped nodes.
pub const INSTRUMENT_RULE_NAME: &str = "Instrument";

/// What `with_dftrace` leaves in the session config: the config it applied and
/// the services plugins provided. Hosts read it with [`DftraceSession::of`].
#[derive(Debug)]
pub struct DftraceSession {
    config: DftraceConfig,
    services: Mutex<Services>,
}

impl DftraceSession {
    /// The dftrace session of `state`, if `with_dftrace` was applied to it.
    pub fn of(state: &SessionState) -> Option<Arc<DftraceSession>> {
        state.config().get_extension::<DftraceSession>()
    }

    /// The configuration applied to the session.
    pub fn config(&self) -> &DftraceConfig {
        &self.config
    }

    /// The service of type `T` plugins provided, without copying the
    /// others (what a query reads at its start).
    pub fn service<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get::<T>()
    }

    /// Adds (or replaces) a service once the session is built: what a
    /// plugin resolves from the others' services at first use.
    pub fn insert_service<T: std::any::Any + Send + Sync>(&self, value: Arc<T>) {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(value);
    }

    /// A snapshot of the services plugins provided.
    pub fn services(&self) -> Services {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Applies dftrace to any `SessionStateBuilder`.
///
/// ```
/// use datafusion::execution::SessionStateBuilder;
/// use dftrace_registry::{DftraceConfig, RegistryStateBuilderExt};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = DftraceConfig::builder().build()?;
/// let state = SessionStateBuilder::new()
///     .with_default_features()
///     .with_dftrace(&config)?
///     // The host may keep configuring; dftrace's rule still ends up last.
///     .build_dftrace()?;
/// # let _ = state;
/// # Ok(())
/// # }
/// ```
pub trait RegistryStateBuilderExt: Sized {
    /// Checks `config` against the linked plugins and runs every plugin's
    /// builder hook, in stage-then-name order.
    fn with_dftrace(self, config: &DftraceConfig) -> Result<SessionStateBuilder, RegistryError>;

    /// Builds the state, moves the `Instrument` rule to the end of the
    /// physical optimizer chain, and runs every plugin's state hook.
    fn build_dftrace(self) -> Result<SessionState, RegistryError>;
}

impl RegistryStateBuilderExt for SessionStateBuilder {
    fn with_dftrace(
        mut self,
        config: &DftraceConfig,
    ) -> Result<SessionStateBuilder, RegistryError> {
        let plugins = linked_plugins();
        let names: Vec<&str> = plugins.iter().map(|plugin| plugin.name()).collect();
        config.check_sections(&names)?;
        for plugin in &plugins {
            plugin.check(config)?;
        }
        if plugins.is_empty() {
            // Nothing to apply: the host gets exactly DataFusion's state.
            return Ok(self);
        }

        let mut services = Services::default();
        for plugin in &plugins {
            if let Some(hook) = plugin.builder_hook() {
                let mut context = PluginContext::new(config, &mut services);
                self = hook(self, &mut context).map_err(|source| RegistryError::Plugin {
                    plugin: plugin.name(),
                    source,
                })?;
            }
        }

        let session = Arc::new(DftraceSession {
            config: config.clone(),
            services: Mutex::new(services),
        });
        let session_config = self.config().take().unwrap_or_default();
        *self.config() = Some(session_config.with_extension(session));
        Ok(self)
    }

    fn build_dftrace(mut self) -> Result<SessionState, RegistryError> {
        let plugins = linked_plugins();
        let session = self
            .config()
            .as_ref()
            .and_then(SessionConfig::get_extension::<DftraceSession>);
        let Some(session) = session else {
            if plugins.is_empty() {
                return Ok(self.build());
            }
            return Err(RegistryError::NotConfigured);
        };

        let mut state = instrument_rule_last(self.build());
        let mut services = session.services();
        for plugin in &plugins {
            if let Some(hook) = plugin.state_hook() {
                let mut context = PluginContext::new(&session.config, &mut services);
                state = hook(state, &mut context).map_err(|source| RegistryError::Plugin {
                    plugin: plugin.name(),
                    source,
                })?;
            }
        }
        *session
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = services;
        Ok(state)
    }
}

/// Moves every `Instrument` rule to the end of the physical optimizer chain,
/// keeping the relative order of the others. Rebuilds only when needed.
fn instrument_rule_last(state: SessionState) -> SessionState {
    let rules = state.physical_optimizers();
    let first_instrument = rules
        .iter()
        .position(|rule| rule.name() == INSTRUMENT_RULE_NAME);
    let already_last = first_instrument.is_none_or(|first| {
        rules[first..]
            .iter()
            .all(|rule| rule.name() == INSTRUMENT_RULE_NAME)
    });
    if already_last {
        return state;
    }
    let (mut reordered, instrument): (Vec<_>, Vec<_>) = rules
        .iter()
        .cloned()
        .partition(|rule| rule.name() != INSTRUMENT_RULE_NAME);
    reordered.extend(instrument);
    SessionStateBuilder::new_from_existing(state)
        .with_physical_optimizer_rules(reordered)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_optimizer::PhysicalOptimizerRule;

    /// The registry's own test binary links no plugins.
    #[test]
    fn no_plugins_gives_datafusion_default_state() -> Result<(), RegistryError> {
        assert!(linked_plugins().is_empty());
        let config = DftraceConfig::builder().build()?;
        let plain = SessionStateBuilder::new().with_default_features().build();
        let traced = SessionStateBuilder::new()
            .with_default_features()
            .with_dftrace(&config)?
            .build_dftrace()?;

        let names = |rules: &[Arc<dyn PhysicalOptimizerRule + Send + Sync>]| {
            rules
                .iter()
                .map(|r| r.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(plain.physical_optimizers()),
            names(traced.physical_optimizers())
        );
        let logical = |state: &SessionState| {
            state
                .optimizers()
                .iter()
                .map(|r| r.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(logical(&plain), logical(&traced));
        let analyzers = |state: &SessionState| {
            state
                .analyzer()
                .rules
                .iter()
                .map(|r| r.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(analyzers(&plain), analyzers(&traced));
        assert_eq!(
            format!("{:?}", plain.config().options()),
            format!("{:?}", traced.config().options())
        );
        assert!(DftraceSession::of(&traced).is_none());
        Ok(())
    }

    #[derive(Debug)]
    struct NamedRule(&'static str);

    impl PhysicalOptimizerRule for NamedRule {
        fn optimize(
            &self,
            plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
            _config: &datafusion::config::ConfigOptions,
        ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            Ok(plan)
        }
        fn name(&self) -> &str {
            self.0
        }
        fn schema_check(&self) -> bool {
            true
        }
    }

    #[test]
    fn instrument_moves_after_rules_added_later_in_either_slot() {
        // One `Instrument` in the base list, one host rule appended after it.
        let mut base: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> = vec![
            Arc::new(NamedRule("A")),
            Arc::new(NamedRule(INSTRUMENT_RULE_NAME)),
        ];
        base.push(Arc::new(NamedRule("B")));
        let state = SessionStateBuilder::new()
            .with_physical_optimizer_rules(base)
            .with_physical_optimizer_rule(Arc::new(NamedRule("HostRule")))
            .build();
        let state = instrument_rule_last(state);
        let names: Vec<_> = state
            .physical_optimizers()
            .iter()
            .map(|r| r.name())
            .collect();
        assert_eq!(names, ["A", "B", "HostRule", INSTRUMENT_RULE_NAME]);
    }
}
