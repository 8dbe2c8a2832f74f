//! The physical optimizer as a host sees it: a rule of the host's, and the
//! order of a session's rules.
//!
//! It depends on DataFusion alone, so a test binary that must not link this
//! library (linking it links the dftrace plugins it depends on) can include
//! the file by path instead.

use datafusion::config::ConfigOptions;
use datafusion::execution::session_state::SessionState;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// How a [`HostRule`] changes a plan.
pub type Rewrite = fn(Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan>;

/// A physical optimizer rule of the host's, named `name`, that rewrites
/// every plan with its [`Rewrite`] and keeps the plan's schema.
#[derive(Debug)]
pub struct HostRule {
    name: &'static str,
    rewrite: Rewrite,
}

impl HostRule {
    /// The rule `name`, rewriting plans with `rewrite`, ready for
    /// `with_physical_optimizer_rule`.
    pub fn new(name: &'static str, rewrite: Rewrite) -> Arc<HostRule> {
        Arc::new(HostRule { name, rewrite })
    }
}

impl PhysicalOptimizerRule for HostRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok((self.rewrite)(plan))
    }

    fn name(&self) -> &str {
        self.name
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The names of `state`'s physical optimizer rules, in the order they run.
pub fn rule_names(state: &SessionState) -> Vec<&str> {
    state
        .physical_optimizers()
        .iter()
        .map(|rule| rule.name())
        .collect()
}
