//! The rules dftrace adds to each planner phase and the wrappers around the
//! session's own rules. The wrappers pass every method through, so the
//! rules run exactly as they would without dftrace; they only note the
//! time, whether the plan changed, and a failure.
//!
//! Each phase's list: a first rule that opens the phase (the analyzer's
//! first also starts the statement and its root), the session's rules
//! wrapped, and a last rule that closes the phase. A logical optimizer rule
//! that lets DataFusion walk the plan for it (`apply_order`) keeps doing so
//! (in place, DataFusion's fast path) unless the statement's rules are
//! timed one by one (`changed` and `full` modes, a sampled statement): then
//! the wrapper walks the plan itself, the same way, and sees the whole plan
//! before and after the rule.

use super::options::PlannerOptions;
use super::statement::{self, PhaseName, PlanRef};
use crate::span_helpers::now_unix_ns;
use datafusion::common::tree_node::{Transformed, TreeNodeRewriter};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::optimizer::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_optimizer::{PhysicalOptimizerContext, PhysicalOptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use dftrace_registry::INSTRUMENT_RULE_NAME;
use std::sync::Arc;

type Analyzers = Vec<Arc<dyn AnalyzerRule + Send + Sync>>;
type Optimizers = Vec<Arc<dyn OptimizerRule + Send + Sync>>;
type PhysicalOptimizers = Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>;

/// The analyzer's rules: the statement's start, the session's rules
/// observed, the phase's end.
pub(super) fn analyzer_rules(rules: Analyzers, options: &Arc<PlannerOptions>) -> Analyzers {
    let mut list: Analyzers = Vec::with_capacity(rules.len() + 2);
    list.push(Arc::new(StatementStart {
        options: Arc::clone(options),
    }));
    list.extend(rules.into_iter().map(|inner| {
        Arc::new(ObservedAnalyzerRule { inner }) as Arc<dyn AnalyzerRule + Send + Sync>
    }));
    list.push(Arc::new(AnalyzerEnd));
    list
}

/// One logical optimizer pass: its start, the session's rules observed,
/// its end.
pub(super) fn optimizer_rules(rules: Optimizers) -> Optimizers {
    let mut list: Optimizers = Vec::with_capacity(rules.len() + 2);
    list.push(Arc::new(PassStart));
    list.extend(rules.into_iter().map(|inner| {
        Arc::new(ObservedOptimizerRule { inner }) as Arc<dyn OptimizerRule + Send + Sync>
    }));
    list.push(Arc::new(PassEnd));
    list
}

/// The physical optimizer's rules: its start, the session's rules observed
/// (dftrace's own `Instrument` rule, which wraps the plan for execution, as
/// it is), its end.
pub(super) fn physical_rules(
    rules: PhysicalOptimizers,
    options: &Arc<PlannerOptions>,
) -> PhysicalOptimizers {
    let mut list: PhysicalOptimizers = Vec::with_capacity(rules.len() + 2);
    list.push(Arc::new(PhysicalStart {
        options: Arc::clone(options),
    }));
    list.extend(rules.into_iter().map(|inner| {
        if inner.name() == INSTRUMENT_RULE_NAME {
            inner
        } else {
            Arc::new(ObservedPhysicalRule { inner }) as Arc<dyn PhysicalOptimizerRule + Send + Sync>
        }
    }));
    list.push(Arc::new(PhysicalEnd));
    list
}

/// The analyzer's first rule: the statement starts (and its root opens,
/// when none encloses it), and the analyzer's phase with it.
#[derive(Debug)]
struct StatementStart {
    options: Arc<PlannerOptions>,
}

impl AnalyzerRule for StatementStart {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        statement::begin(&self.options, &plan);
        statement::open_phase(PhaseName::Analyze, PlanRef::Logical(&plan));
        Ok(plan)
    }

    fn name(&self) -> &str {
        "dftrace_statement_start"
    }
}

/// The analyzer's last rule: its phase ends.
#[derive(Debug)]
struct AnalyzerEnd;

impl AnalyzerRule for AnalyzerEnd {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        statement::close_phase(PlanRef::Logical(&plan));
        Ok(plan)
    }

    fn name(&self) -> &str {
        "dftrace_analyzer_end"
    }
}

/// One of the session's analyzer rules, timed, and compared with its input
/// when rules are timed (an analyzer rule does not say whether it changed
/// the plan).
#[derive(Debug)]
struct ObservedAnalyzerRule {
    inner: Arc<dyn AnalyzerRule + Send + Sync>,
}

#[deny(clippy::missing_trait_methods)]
impl AnalyzerRule for ObservedAnalyzerRule {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let before = statement::times_rules().then(|| plan.clone());
        let start = now_unix_ns();
        match self.inner.analyze(plan, config) {
            Ok(after) => {
                if let Some(before) = before {
                    let changed = before != after;
                    let end = now_unix_ns();
                    statement::rule_ran(self.name(), start, end, changed, PlanRef::Logical(&after));
                }
                Ok(after)
            }
            Err(error) => {
                statement::rule_failed(self.name(), Some(start), &error, true);
                Err(error)
            }
        }
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// A logical optimizer pass's first rule: the pass's phase opens.
#[derive(Debug)]
struct PassStart;

impl OptimizerRule for PassStart {
    fn name(&self) -> &str {
        "dftrace_pass_start"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        statement::open_phase(PhaseName::Optimize, PlanRef::Logical(&plan));
        statement::record_max_passes(config.options().optimizer.max_passes);
        Ok(Transformed::no(plan))
    }
}

/// A logical optimizer pass's last rule: the pass's phase closes.
#[derive(Debug)]
struct PassEnd;

impl OptimizerRule for PassEnd {
    fn name(&self) -> &str {
        "dftrace_pass_end"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        statement::close_phase(PlanRef::Logical(&plan));
        statement::pass_ended(&plan);
        Ok(Transformed::no(plan))
    }
}

/// One of the session's optimizer rules, applied as DataFusion applies it
/// (its own `apply_order`) unless the statement's rules are timed: then it
/// is applied here, walking the plan the same way, and its time and change
/// are known. A failure is noted either way.
#[derive(Debug)]
struct ObservedOptimizerRule {
    inner: Arc<dyn OptimizerRule + Send + Sync>,
}

impl ObservedOptimizerRule {
    /// The rule applied to the whole plan, walking it as DataFusion would.
    fn apply(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match self.inner.apply_order() {
            Some(order) => plan.rewrite_with_subqueries(&mut Walk {
                order,
                rule: self.inner.as_ref(),
                config,
            }),
            None => self.inner.rewrite(plan, config),
        }
    }

    fn failed(&self, error: &DataFusionError, start: u64, config: &dyn OptimizerConfig) {
        // With `skip_failed_rules` DataFusion goes on without it.
        let fatal = !config.options().optimizer.skip_failed_rules;
        statement::rule_failed(self.name(), Some(start), error, fatal);
    }
}

#[deny(clippy::missing_trait_methods)]
impl OptimizerRule for ObservedOptimizerRule {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        // Asked before each application: the answer holds for it.
        if statement::times_rules() {
            None
        } else {
            self.inner.apply_order()
        }
    }

    #[expect(deprecated, reason = "passed through for rules that still answer it")]
    fn supports_rewrite(&self) -> bool {
        self.inner.supports_rewrite()
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>, DataFusionError> {
        let start = now_unix_ns();
        if !statement::times_rules() {
            // DataFusion walks the plan: this is one node (or, for a rule
            // that walks it itself, the whole plan).
            return self.inner.rewrite(plan, config).inspect_err(|error| {
                self.failed(error, start, config);
            });
        }
        match self.apply(plan, config) {
            Ok(rewritten) => {
                statement::rule_ran(
                    self.name(),
                    start,
                    now_unix_ns(),
                    rewritten.transformed,
                    PlanRef::Logical(&rewritten.data),
                );
                Ok(rewritten)
            }
            Err(error) => {
                self.failed(&error, start, config);
                Err(error)
            }
        }
    }
}

/// A rule with an `apply_order` applied to every node of a plan (and its
/// subqueries), as DataFusion's optimizer applies it.
struct Walk<'a> {
    order: ApplyOrder,
    rule: &'a dyn OptimizerRule,
    config: &'a dyn OptimizerConfig,
}

impl TreeNodeRewriter for Walk<'_> {
    type Node = LogicalPlan;

    fn f_down(&mut self, node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        match self.order {
            ApplyOrder::TopDown => self.rule.rewrite(node, self.config),
            ApplyOrder::BottomUp => Ok(Transformed::no(node)),
        }
    }

    fn f_up(&mut self, node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        match self.order {
            ApplyOrder::BottomUp => self.rule.rewrite(node, self.config),
            ApplyOrder::TopDown => Ok(Transformed::no(node)),
        }
    }
}

/// The physical optimizer's first rule: the statement's physical stage and
/// its phase open.
#[derive(Debug)]
struct PhysicalStart {
    options: Arc<PlannerOptions>,
}

impl PhysicalOptimizerRule for PhysicalStart {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        statement::begin_physical(&self.options);
        statement::open_phase(PhaseName::OptimizePhysical, PlanRef::Physical(&plan));
        Ok(plan)
    }

    fn name(&self) -> &str {
        "dftrace_physical_start"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The physical optimizer's last rule: the phase and the physical stage
/// end.
#[derive(Debug)]
struct PhysicalEnd;

impl PhysicalOptimizerRule for PhysicalEnd {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        statement::close_phase(PlanRef::Physical(&plan));
        Ok(plan)
    }

    fn name(&self) -> &str {
        "dftrace_physical_end"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One of the session's physical optimizer rules, timed; it changed the
/// plan when it returned another one.
#[derive(Debug)]
struct ObservedPhysicalRule {
    inner: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
}

impl ObservedPhysicalRule {
    fn observe(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        optimize: impl FnOnce(Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let before = statement::times_rules().then(|| Arc::clone(&plan));
        let start = now_unix_ns();
        match optimize(plan) {
            Ok(after) => {
                if let Some(before) = before {
                    let changed = !Arc::ptr_eq(&before, &after);
                    let end = now_unix_ns();
                    statement::rule_ran(
                        self.name(),
                        start,
                        end,
                        changed,
                        PlanRef::Physical(&after),
                    );
                }
                Ok(after)
            }
            Err(error) => {
                statement::rule_failed(self.name(), Some(start), &error, true);
                Err(error)
            }
        }
    }
}

#[deny(clippy::missing_trait_methods)]
impl PhysicalOptimizerRule for ObservedPhysicalRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.observe(plan, |plan| self.inner.optimize(plan, config))
    }

    fn optimize_with_context(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: &dyn PhysicalOptimizerContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.observe(plan, |plan| self.inner.optimize_with_context(plan, context))
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_check(&self) -> bool {
        self.inner.schema_check()
    }
}
