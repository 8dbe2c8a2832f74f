//! The session's query planner and table factories, wrapped: the query
//! planner takes over the root the analyzer opened (so physical planning,
//! execution and storage requests are in the statement's trace) and spans
//! physical planning; a table factory (`CREATE EXTERNAL TABLE`, which no
//! analyzer runs for) opens a root of its own.

use super::options::PlannerOptions;
use super::statement::{self, PhaseName};
use crate::config::RuleMode;
use crate::query::{QuerySpan, trace_known_unsampled};
use crate::root::with_query_root;
use crate::span_helpers::inside_query;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{CreateExternalTable, LogicalPlan};
use datafusion::physical_plan::{ExecutionPlan, displayable};
use dftrace_registry::keys;
use std::sync::Arc;
use tracing::{Instrument, Span};

/// The session's query planner, inside the statement's root: the one the
/// analyzer opened (taken over here), one that enclosed the planning, or,
/// when neither (a host that called the planner itself), one opened here.
/// The plan it returns carries a root dftrace opened, which ends when the
/// plan's execution does.
#[derive(Debug)]
pub(crate) struct QueryRootPlanner {
    inner: Arc<dyn QueryPlanner + Send + Sync>,
    options: Arc<PlannerOptions>,
}

impl QueryRootPlanner {
    pub(crate) fn new(
        inner: Arc<dyn QueryPlanner + Send + Sync>,
        options: Arc<PlannerOptions>,
    ) -> Self {
        QueryRootPlanner { inner, options }
    }

    /// Physical planning under `parent`, in a `create_physical_plan` span
    /// when planner spans are recorded.
    async fn plan_under(
        &self,
        parent: &Span,
        recording: bool,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let recorded = recording && self.options.mode != RuleMode::Disabled;
        if !recorded {
            return self
                .inner
                .create_physical_plan(logical_plan, session)
                .instrument(parent.clone())
                .await;
        }
        let span = statement::phase_span(
            self.options.settings().config.span_level,
            PhaseName::CreatePhysicalPlan,
            parent,
        );
        let literals = parent.in_scope(crate::literals::current);
        if self.options.plan_diff {
            crate::literals::add_logical(&literals, logical_plan);
            let text = literals.masked(logical_plan.display_indent().to_string());
            span.record(keys::LOGICAL_PLAN, text.as_str());
        }
        let planned = self
            .inner
            .create_physical_plan(logical_plan, session)
            .instrument(span.clone())
            .await;
        match &planned {
            Ok(plan) if self.options.plan_diff => {
                let text = literals.masked(displayable(plan.as_ref()).indent(true).to_string());
                span.record(keys::PHYSICAL_PLAN, text.as_str());
            }
            Ok(_) => {}
            Err(error) => {
                statement::abandon_physical(error);
                let message = literals.mask_error(error.to_string());
                span.record(keys::STATUS_CODE, "ERROR");
                span.record(keys::STATUS_DESCRIPTION, message.as_str());
            }
        }
        planned
    }
}

#[async_trait]
impl QueryPlanner for QueryRootPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // DataFusion calls the planner right after the logical optimizer, on
        // the same thread and in the same poll: the statement the analyzer
        // started is the one on top of this thread's stack.
        let planned = statement::take_planned_root();
        let (query, recording) = match planned {
            Some(planned) => (planned.root, planned.recording),
            None if inside_query() => {
                let current = Span::current();
                let recording = !current.is_disabled() && !trace_known_unsampled(&current);
                (None, recording)
            }
            None => {
                let query = QuerySpan::start_auto(session.config(), None)?;
                let recording = !query.unsampled() && !query.span().is_disabled();
                (Some(query), recording)
            }
        };
        let Some(query) = query else {
            let current = Span::current();
            return self
                .plan_under(&current, recording, logical_plan, session)
                .await;
        };
        let root = query.span().clone();
        match self
            .plan_under(&root, recording, logical_plan, session)
            .await
        {
            Ok(plan) => Ok(with_query_root(plan, query)),
            Err(error) => {
                query.record_error(&error);
                Err(error)
            }
        }
    }
}

/// A table factory (`CREATE EXTERNAL TABLE`) that runs under a root query
/// span when none encloses it, so the storage requests it makes (listing,
/// schema inference) are one trace.
#[derive(Debug)]
pub(crate) struct TracedTableFactory {
    inner: Arc<dyn TableProviderFactory>,
}

impl TracedTableFactory {
    pub(crate) fn new(inner: Arc<dyn TableProviderFactory>) -> Self {
        TracedTableFactory { inner }
    }
}

#[async_trait]
impl TableProviderFactory for TracedTableFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        if inside_query() {
            return self.inner.create(state, cmd).await;
        }
        let query = QuerySpan::start_auto(state.config(), None)?;
        let created = self
            .inner
            .create(state, cmd)
            .instrument(query.span().clone())
            .await;
        match &created {
            Ok(_) => query.record_success(0, None),
            Err(error) => query.record_error(error),
        }
        created
    }
}
