//! The statement being planned on this thread: its root span, its literal
//! values, the phase open now and what its rules did.
//!
//! DataFusion runs the analyzer, each logical optimizer pass and the
//! physical optimizer synchronously on the calling thread, and calls the
//! query planner right after the logical optimizer, in the same poll; so
//! what the rules of one statement learn can wait in a thread-local stack
//! (a stack, because planning can nest: a view is planned inside the
//! physical planning of the query that reads it).

use super::options::PlannerOptions;
use crate::config::RuleMode;
use crate::query::{QuerySpan, trace_known_unsampled};
use crate::span_helpers::{inside_query, now_unix_ns, tracer_of, unix_ns_time};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, displayable};
use dftrace_registry::SpanLevel;
use dftrace_registry::keys::{self, PLANNER_TARGET};
use dftrace_registry::literals::QueryLiterals;
use dftrace_registry::saturating_i64;
use opentelemetry::KeyValue;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer};
use std::cell::RefCell;
use std::sync::Arc;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

thread_local! {
    static STATEMENTS: RefCell<Stack> = const { RefCell::new(Stack(Vec::new())) };
}

/// The statements being planned on one thread, innermost last.
struct Stack(Vec<Statement>);

impl std::ops::Deref for Stack {
    type Target = Vec<Statement>;

    fn deref(&self) -> &Vec<Statement> {
        &self.0
    }
}

impl std::ops::DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut Vec<Statement> {
        &mut self.0
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // At thread exit `tracing`'s own thread-locals may be gone already,
        // and closing a span then would panic inside a destructor: a root
        // still here (a statement only optimized, never planned) is left
        // open rather than closed.
        for statement in self.0.drain(..) {
            std::mem::forget(statement);
        }
    }
}

/// Which part of planning a statement entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The analyzer and the logical optimizer; then it waits for the query
    /// planner.
    Logical,
    /// The physical optimizer, inside the query planner.
    Physical,
}

/// The planner phases, by their span names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PhaseName {
    Analyze,
    Optimize,
    CreatePhysicalPlan,
    OptimizePhysical,
}

/// One statement being planned.
struct Statement {
    stage: Stage,
    /// The root dftrace opened for it, until the query planner takes it.
    opened: Option<QuerySpan>,
    options: Arc<PlannerOptions>,
    literals: Arc<QueryLiterals>,
    /// Spans are recorded: the trace is sampled and a subscriber listens.
    recording: bool,
    /// The span its phases open under.
    parent: Span,
    level: SpanLevel,
    passes: i64,
    phase: Option<Phase>,
    /// The plan the logical optimizer last left, by its schema's address:
    /// a statement planned again from that plan is this statement still.
    optimized: Option<usize>,
}

/// The phase open now.
struct Phase {
    span: tracing::span::EnteredSpan,
    rules: i64,
    rule_ns: u64,
    effective: Vec<String>,
    /// The plan as text, as the last rule left it (with plan diffs).
    text: Option<String>,
    /// When the phase opened (a failed rule's start, when not known).
    since: u64,
}

/// The plan a rule left, to describe it.
#[derive(Clone, Copy)]
pub(super) enum PlanRef<'a> {
    Logical(&'a LogicalPlan),
    Physical(&'a Arc<dyn ExecutionPlan>),
}

impl PlanRef<'_> {
    /// The plan as text, its literal values added to `literals` first.
    fn text(self, literals: &QueryLiterals) -> String {
        match self {
            // Without each node's schema: the diffs stay about the plan.
            PlanRef::Logical(plan) => {
                crate::literals::add_logical(literals, plan);
                plan.display_indent().to_string()
            }
            PlanRef::Physical(plan) => {
                crate::literals::add_physical(literals, plan);
                displayable(plan.as_ref()).indent(false).to_string()
            }
        }
    }
}

/// At the analyzer's first rule: the statement starts. A root that
/// encloses the planning (`run_sql`, `QuerySpan`, the query a view is
/// planned for) is its root; else dftrace opens one here, a child of the
/// host's current span.
pub(super) fn begin(options: &Arc<PlannerOptions>, plan: &LogicalPlan) {
    if resume(plan) {
        return;
    }
    finish_stale();
    let current = Span::current();
    let (opened, literals, recording, parent) = if does_nothing(plan) {
        // What `ctx.sql` returns for a statement it already ran (DDL,
        // `CREATE TABLE .. AS`, `PREPARE`): a host that collects it runs
        // nothing, and gets no trace for it.
        (None, Arc::default(), false, current)
    } else if inside_query() {
        let recording = !current.is_disabled() && !trace_known_unsampled(&current);
        (None, crate::literals::current(), recording, current)
    } else {
        let Ok(query) = QuerySpan::start_auto_with(options.settings(), None) else {
            return;
        };
        let recording = !query.unsampled() && !query.span().is_disabled();
        let literals = Arc::clone(query.literals());
        let parent = query.span().clone();
        (Some(query), literals, recording, parent)
    };
    if recording {
        crate::literals::add_logical(&literals, plan);
    }
    push(Statement {
        stage: Stage::Logical,
        opened,
        level: options.settings().config.span_level,
        options: Arc::clone(options),
        literals,
        recording,
        parent,
        passes: 0,
        phase: None,
        optimized: None,
    });
}

/// The identity of the plan a logical optimizer left: its schema's
/// address (what DataFusion hands on with the plan, never rebuilt).
fn plan_identity(plan: &LogicalPlan) -> usize {
    Arc::as_ptr(plan.schema()) as usize
}

/// Whether `plan` is what the logical optimizer just left on this thread
/// for a statement that did not reach its query planner: DataFusion
/// optimizes a `CREATE TABLE .. AS` input, then plans it again to run it.
/// That is one statement: it goes on under the same root.
fn resume(plan: &LogicalPlan) -> bool {
    let identity = plan_identity(plan);
    with_top(|statement| {
        let resumes = statement.stage == Stage::Logical
            && statement.phase.is_none()
            && statement.optimized == Some(identity);
        if resumes {
            statement.optimized = None;
            if statement.recording {
                crate::literals::add_logical(&statement.literals, plan);
            }
        }
        resumes
    })
    .unwrap_or(false)
}

/// A logical optimizer pass ended with `plan`.
pub(super) fn pass_ended(plan: &LogicalPlan) {
    with_top(|statement| {
        if statement.stage == Stage::Logical {
            statement.optimized = Some(plan_identity(plan));
        }
    });
}

/// A plan that produces no row and reads nothing.
fn does_nothing(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::EmptyRelation(empty) if !empty.produce_one_row)
}

/// At the physical optimizer's first rule, inside the query planner: the
/// physical stage of the statement whose root is current.
pub(super) fn begin_physical(options: &Arc<PlannerOptions>) {
    let current = Span::current();
    // Outside any query (a plan that runs nothing) nothing is recorded.
    let recording = !current.is_disabled() && !trace_known_unsampled(&current) && inside_query();
    push(Statement {
        stage: Stage::Physical,
        opened: None,
        level: options.settings().config.span_level,
        options: Arc::clone(options),
        literals: crate::literals::current(),
        recording,
        parent: current,
        passes: 0,
        phase: None,
        optimized: None,
    });
}

fn push(statement: Statement) {
    STATEMENTS.with(|statements| statements.borrow_mut().push(statement));
}

/// Logical statements that never reached a query planner (only optimized,
/// as `DataFrame::into_optimized_plan` does, or failed between two rules):
/// their roots end here, without an outcome, when the thread plans its
/// next statement (or when it exits).
fn finish_stale() {
    let stale: Vec<Statement> = STATEMENTS.with(|statements| {
        let mut statements = statements.borrow_mut();
        let keep = statements
            .iter()
            .rposition(|s| s.stage == Stage::Physical || s.phase.is_some())
            .map_or(0, |last| last + 1);
        statements.split_off(keep)
    });
    drop(stale);
}

/// Runs `f` on the statement planned now, when one is.
fn with_top<T>(f: impl FnOnce(&mut Statement) -> T) -> Option<T> {
    STATEMENTS.with(|statements| statements.borrow_mut().last_mut().map(f))
}

/// Opens phase `name` of the statement planned now (`Optimize` counts a
/// pass). With plan diffs, the plan's text now is the first "before".
pub(super) fn open_phase(name: PhaseName, plan: PlanRef<'_>) {
    with_top(|statement| {
        if !statement.recording || statement.options.mode == RuleMode::Disabled {
            return;
        }
        let span = phase_span(statement.level, name, &statement.parent);
        if name == PhaseName::Optimize {
            statement.passes += 1;
            span.record(keys::OPTIMIZER_PASS, statement.passes);
        }
        let text = statement
            .options
            .plan_diff
            .then(|| plan.text(&statement.literals));
        statement.phase = Some(Phase {
            span: span.entered(),
            rules: 0,
            rule_ns: 0,
            effective: Vec::new(),
            text,
            since: now_unix_ns(),
        });
    });
}

/// Records the session's `max_passes` on the open optimizer phase.
pub(super) fn record_max_passes(max_passes: usize) {
    with_top(|statement| {
        if let Some(phase) = &statement.phase {
            phase
                .span
                .record(keys::OPTIMIZER_MAX_PASSES, saturating_i64(max_passes));
        }
    });
}

/// Whether the rules of the phase open now are timed one by one (for
/// `changed` and `full` rule spans).
pub(super) fn times_rules() -> bool {
    with_top(|statement| {
        statement.recording && statement.phase.is_some() && statement.options.times_rules()
    })
    .unwrap_or(false)
}

/// A rule application of the open phase ran from `start` to `end` (Unix
/// ns) and, when `changed`, changed the plan to `after`.
pub(super) fn rule_ran(name: &str, start: u64, end: u64, changed: bool, after: PlanRef<'_>) {
    with_top(|statement| {
        let Statement {
            options,
            literals,
            phase,
            recording,
            ..
        } = statement;
        let Some(phase) = phase.as_mut() else { return };
        if !*recording {
            return;
        }
        phase.rules += 1;
        phase.rule_ns += end.saturating_sub(start);
        let mut changed = changed;
        let mut diff = None;
        if changed && let Some(before) = &phase.text {
            let text = after.text(literals);
            if &text == before {
                // The rule rebuilt the plan without changing it.
                changed = false;
            } else {
                diff = Some(literals.masked(plan_diff(before, &text)));
                phase.text = Some(text);
            }
        }
        if changed {
            phase.effective.push(name.to_owned());
        }
        let wanted = match options.mode {
            RuleMode::Full => true,
            RuleMode::Changed => changed,
            RuleMode::PhaseOnly | RuleMode::Disabled => false,
        };
        if wanted {
            rule_span(&phase.span, name, start, end, changed, diff, None);
        }
    });
}

/// Rule `name`, started at `start` (else at the last checkpoint), failed
/// with `error`. A `fatal` failure ends the statement: its phase closes
/// with the error, and a root dftrace opened for it ends with it too
/// (DataFusion gives up on the statement).
pub(super) fn rule_failed(name: &str, start: Option<u64>, error: &DataFusionError, fatal: bool) {
    let end = now_unix_ns();
    let ended = STATEMENTS.with(|statements| {
        let mut statements = statements.borrow_mut();
        let statement = statements.last_mut()?;
        if let (true, Some(phase)) = (statement.recording, &statement.phase) {
            let message = statement.literals.mask_error(error.to_string());
            let start = start.unwrap_or(phase.since);
            rule_span(&phase.span, name, start, end, false, None, Some(message));
        }
        if !fatal {
            return None;
        }
        statements.pop()
    });
    let Some(mut statement) = ended else { return };
    let message = statement.literals.mask_error(error.to_string());
    if let Some(phase) = statement.phase.take() {
        phase.span.record(keys::STATUS_CODE, "ERROR");
        phase
            .span
            .record(keys::STATUS_DESCRIPTION, message.as_str());
        close(phase, None, &statement);
    }
    if let Some(query) = statement.opened.take() {
        query.record_error(error);
    }
}

/// Closes the open phase; `after` is the plan it ends with (for the
/// phase's diff in `phase-only` mode). The physical stage ends with its
/// phase.
pub(super) fn close_phase(after: PlanRef<'_>) {
    let taken = STATEMENTS.with(|statements| {
        let mut statements = statements.borrow_mut();
        let top = statements.last_mut()?;
        let phase = top.phase.take();
        let popped = if top.stage == Stage::Physical {
            statements.pop()
        } else {
            None
        };
        Some((phase, popped))
    });
    let Some((Some(phase), popped)) = taken else {
        return;
    };
    match popped {
        // The physical stage's entry is already off the stack.
        Some(statement) => {
            let diff = phase_diff(&phase, after, &statement);
            close(phase, diff, &statement);
        }
        None => {
            with_top(|statement| {
                let diff = phase_diff(&phase, after, statement);
                close(phase, diff, statement);
            });
        }
    }
}

/// The whole phase's diff, for `phase-only` mode with plan diffs (in the
/// other modes the rule spans carry the diffs).
fn phase_diff(phase: &Phase, after: PlanRef<'_>, statement: &Statement) -> Option<String> {
    if statement.options.mode != RuleMode::PhaseOnly {
        return None;
    }
    let before = phase.text.as_ref()?;
    let text = after.text(&statement.literals);
    (&text != before).then(|| statement.literals.masked(plan_diff(before, &text)))
}

fn close(phase: Phase, diff: Option<String>, statement: &Statement) {
    let span = &phase.span;
    if statement.options.times_rules() {
        span.record(keys::PLANNER_RULES, phase.rules);
        span.record(keys::PLANNER_RULE_TIME_NS, saturating_i64(phase.rule_ns));
    }
    if !phase.effective.is_empty() {
        span.record(keys::EFFECTIVE_RULES, phase.effective.join(", ").as_str());
    }
    if let Some(diff) = diff {
        span.record(keys::PLAN_DIFF, diff.as_str());
    }
    // Dropping the entered span exits and closes it.
}

/// What the query planner takes over from the logical stage.
#[derive(Debug)]
pub(crate) struct Planned {
    /// The root dftrace opened for the statement, when none enclosed it.
    pub(crate) root: Option<QuerySpan>,
    /// Spans are recorded for the statement.
    pub(crate) recording: bool,
}

/// The statement whose logical stage just ended on this thread, taken off
/// the stack: for the query planner, which DataFusion calls right after the
/// logical optimizer (and for the exec rule, should a host have replaced
/// dftrace's query planner).
pub(crate) fn take_planned_root() -> Option<Planned> {
    let statement = STATEMENTS.with(|statements| {
        let mut statements = statements.borrow_mut();
        let top = statements.last()?;
        (top.stage == Stage::Logical && top.phase.is_none())
            .then(|| statements.pop())
            .flatten()
    })?;
    let Statement {
        opened, recording, ..
    } = statement;
    Some(Planned {
        root: opened,
        recording,
    })
}

/// After a failed physical planning: its physical stage, if a check
/// between two rules stopped it, ends with the error.
pub(super) fn abandon_physical(error: &DataFusionError) {
    let open = STATEMENTS.with(|statements| {
        let mut statements = statements.borrow_mut();
        let top = statements.last()?;
        (top.stage == Stage::Physical)
            .then(|| statements.pop())
            .flatten()
    });
    if let Some(mut statement) = open
        && let Some(phase) = statement.phase.take()
    {
        let message = statement.literals.mask_error(error.to_string());
        phase.span.record(keys::STATUS_CODE, "ERROR");
        phase
            .span
            .record(keys::STATUS_DESCRIPTION, message.as_str());
        close(phase, None, &statement);
    }
}

/// One rule application's span, built through OpenTelemetry directly (its
/// start is known only once the rule has run), under `phase`.
fn rule_span(
    phase: &Span,
    name: &str,
    start: u64,
    end: u64,
    changed: bool,
    diff: Option<String>,
    error: Option<String>,
) {
    let parent = phase.context();
    if !parent.span().span_context().is_valid() {
        // No OpenTelemetry layer: no trace to put the span in.
        return;
    }
    let tracer: Arc<BoxedTracer> = tracer_of(phase);
    let mut attributes = vec![
        KeyValue::new(keys::TARGET, PLANNER_TARGET),
        KeyValue::new(keys::PLANNER_CHANGED, changed),
    ];
    if let Some(diff) = diff {
        attributes.push(KeyValue::new(keys::PLAN_DIFF, diff));
    }
    let mut span = tracer
        .span_builder(name.to_owned())
        .with_kind(SpanKind::Internal)
        .with_start_time(unix_ns_time(start))
        .with_attributes(attributes)
        .start_with_context(tracer.as_ref(), &parent);
    if let Some(message) = error {
        span.set_status(Status::error(message));
    }
    span.end_with_timestamp(unix_ns_time(end.max(start)));
}

/// A unified diff of two plan texts: the changed lines with two lines of
/// context around them, under `@@` hunk headers.
fn plan_diff(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(2)
        .to_string()
}

/// A planner span named `name` under `parent`, at `level` (`tracing` needs
/// the level and the name as constants at each callsite).
pub(super) fn phase_span(level: SpanLevel, name: PhaseName, parent: &Span) -> Span {
    macro_rules! span {
        ($level:expr, $name:literal) => {
            tracing::span!(
                target: PLANNER_TARGET,
                parent: parent,
                $level,
                $name,
                datafusion.optimizer.pass = Empty,
                datafusion.optimizer.max_passes = Empty,
                datafusion.effective_rules = Empty,
                datafusion.plan_diff = Empty,
                dftrace.planner.rules = Empty,
                dftrace.planner.rule_time_ns = Empty,
                logical_plan = Empty,
                physical_plan = Empty,
                otel.status_code = Empty,
                otel.status_description = Empty,
            )
        };
    }
    macro_rules! at_level {
        ($name:literal) => {
            match level {
                SpanLevel::Trace => span!(tracing::Level::TRACE, $name),
                SpanLevel::Debug => span!(tracing::Level::DEBUG, $name),
                SpanLevel::Info => span!(tracing::Level::INFO, $name),
                SpanLevel::Warn => span!(tracing::Level::WARN, $name),
                SpanLevel::Error => span!(tracing::Level::ERROR, $name),
            }
        };
    }
    match name {
        PhaseName::Analyze => at_level!("analyze_logical_plan"),
        PhaseName::Optimize => at_level!("optimize_logical_plan"),
        PhaseName::CreatePhysicalPlan => at_level!("create_physical_plan"),
        PhaseName::OptimizePhysical => at_level!("optimize_physical_plan"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_are_the_wire_names() {
        let names = [
            (PhaseName::Analyze, keys::ANALYZE_PHASE),
            (PhaseName::Optimize, keys::OPTIMIZE_PHASE),
            (PhaseName::CreatePhysicalPlan, keys::CREATE_PHYSICAL_PLAN),
            (PhaseName::OptimizePhysical, keys::OPTIMIZE_PHYSICAL_PHASE),
        ];
        for (phase, name) in names {
            let span = phase_span(SpanLevel::Info, phase, &Span::none());
            // Without a subscriber the span is disabled, but its callsite's
            // metadata still carries the name.
            let metadata = span.metadata().map(|m| m.name());
            assert!(metadata.is_none() || metadata == Some(name), "{phase:?}");
        }
        assert_eq!(
            plan_diff("a\nb\nc\nd\ne\nf\n", "a\nb\nc\nd\ne\nF\n"),
            "@@ -4,3 +4,3 @@\n d\n e\n-f\n+F\n",
            "the changed lines and two of context"
        );
    }
}
