//! What plugins do to a DataFusion session: hooks, their context, and the
//! services plugins hand to each other.

use crate::config::{DftraceConfig, Section};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A hook on the `SessionStateBuilder`, before the state is built.
pub type BuilderHook = fn(
    SessionStateBuilder,
    &mut PluginContext<'_>,
) -> datafusion::error::Result<SessionStateBuilder>;

/// A hook on the built `SessionState` (planner rule wrapping needs the state).
pub type StateHook =
    fn(SessionState, &mut PluginContext<'_>) -> datafusion::error::Result<SessionState>;

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
