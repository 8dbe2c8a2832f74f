//! What the planner wrappers of one session share.

use crate::config::{RuleMode, RulesConfig};
use crate::query::QuerySettings;
use dftrace_registry::DftraceSession;
use std::sync::{Arc, OnceLock};

/// What the planner wrappers of one session do.
#[derive(Debug)]
pub(crate) struct PlannerOptions {
    pub(crate) mode: RuleMode,
    pub(crate) plan_diff: bool,
    config: RulesConfig,
    /// The dftrace session, when the registry applied dftrace.
    session: Option<Arc<DftraceSession>>,
    /// What the roots opened for the session's statements start with,
    /// resolved at the first one (when every plugin has added its
    /// observers).
    settings: OnceLock<Arc<QuerySettings>>,
}

impl PlannerOptions {
    pub(super) fn new(config: &RulesConfig, session: Option<Arc<DftraceSession>>) -> Self {
        PlannerOptions {
            mode: config.rule_mode,
            plan_diff: config.plan_diff,
            config: config.clone(),
            session,
            settings: OnceLock::new(),
        }
    }

    /// Whether rule applications are timed one by one.
    pub(super) fn times_rules(&self) -> bool {
        matches!(self.mode, RuleMode::Changed | RuleMode::Full)
    }

    pub(crate) fn settings(&self) -> &Arc<QuerySettings> {
        self.settings.get_or_init(|| match &self.session {
            Some(session) => QuerySettings::of_dftrace(session, || self.config.clone()),
            None => Arc::new(QuerySettings {
                config: Arc::new(self.config.clone()),
                observers: Vec::new(),
                operator_attributes: Vec::new(),
                running: None,
            }),
        })
    }
}
