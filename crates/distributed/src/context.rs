//! The coordinator's side: trace context into passthrough headers, and the
//! workers' metrics back into the plan.

use datafusion::dataframe::DataFrame;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    DistributedExt, DistributedMetricsFormat, rewrite_distributed_plan_with_metrics,
};
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::sync::Arc;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use dftrace_rules::{TRACEPARENT, TRACESTATE};

/// The W3C trace-context headers of `span` (`traceparent`, and `tracestate`
/// when the trace has one); empty when the span has no valid OpenTelemetry
/// context (no OpenTelemetry layer, or the span is disabled).
pub fn trace_context_headers(span: &tracing::Span) -> HeaderMap {
    let context = span.context();
    let mut headers = HeaderMap::new();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut headers));
    }
    headers
}

/// Returns `frame` with `span`'s trace context set as datafusion-distributed
/// passthrough headers on its own session (not the `SessionContext`'s, so
/// concurrent queries each carry their own trace). Every plan and task
/// request its distributed plan sends then names `span` as the parent of
/// the workers' spans.
///
/// Passthrough headers are one set per session: pass the host's own in
/// `headers` (they are kept; the trace-context names are dftrace's).
///
/// ```no_run
/// # async fn run(ctx: datafusion::prelude::SessionContext) -> Result<(), Box<dyn std::error::Error>> {
/// use dftrace_rules::{QueryOptions, QuerySpan};
/// let sql = "SELECT count(*) FROM lineitem";
/// let query = QuerySpan::start(ctx.state().config(), Some(sql), &QueryOptions::new())?;
/// let frame = ctx.sql(sql).await?;
/// let frame = dftrace_distributed::with_trace_context(frame, query.span(), Default::default())?;
/// # Ok(()) }
/// ```
pub fn with_trace_context(
    frame: DataFrame,
    span: &tracing::Span,
    mut headers: HeaderMap,
) -> Result<DataFrame> {
    headers.extend(trace_context_headers(span));
    let (mut state, plan) = frame.into_parts();
    state.set_distributed_passthrough_headers(headers)?;
    Ok(DataFrame::new(state, plan))
}

/// The executed plan with each stage's metrics as the workers reported them,
/// summed over tasks, so that the query's metrics summary
/// (`QuerySpan::record_success`) covers the whole distributed query and not
/// only the coordinator's head stage. Waits until the workers have sent
/// their metrics (they do when the query's streams end); a plan that is not
/// distributed is returned as it is.
pub async fn plan_with_worker_metrics(
    plan: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    rewrite_distributed_plan_with_metrics(plan, DistributedMetricsFormat::Aggregated).await
}
