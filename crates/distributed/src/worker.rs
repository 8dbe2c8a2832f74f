//! The workers' side: a span per gRPC request under the coordinator's trace,
//! and sessions built through the dftrace registry.

use crate::context::{TRACEPARENT, TRACESTATE, trace_context_headers};
use async_trait::async_trait;
use datafusion::config::ConfigOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use datafusion_distributed::{
    BroadcastExec, DistributedExt, WorkerPlanRewriteEvent, WorkerPlanRewriteEventResponse,
    WorkerQueryContext, WorkerSessionBuilder,
};
use dftrace_registry::{DftraceConfig, INSTRUMENT_RULE_NAME, RegistryStateBuilderExt};
use http::HeaderMap;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use std::sync::Arc;
use std::task::{Context, Poll};
use tracing::Instrument;
use tracing::instrument::Instrumented;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use dftrace_registry::keys::{WORKER_SPAN_NAME, WORKER_TARGET};

/// A tower layer for a datafusion-distributed worker's gRPC server: each
/// request that carries a W3C `traceparent` (the coordinator's query span,
/// see [`with_trace_context`](crate::with_trace_context)) runs inside a
/// `dftrace.worker` span that is that span's child.
///
/// ```no_run
/// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
/// use datafusion_distributed::Worker;
/// use dftrace_distributed::{WorkerSessions, WorkerTraceLayer};
/// let config = dftrace_registry::DftraceConfig::from_env()?;
/// let worker = Worker::from_session_builder(WorkerSessions::new(config));
/// tonic::transport::Server::builder()
///     .layer(WorkerTraceLayer)
///     .add_service(worker.into_worker_server())
///     .serve("127.0.0.1:50051".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerTraceLayer;

impl<S> tower::Layer<S> for WorkerTraceLayer {
    type Service = WorkerTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WorkerTraceService { inner }
    }
}

/// The service [`WorkerTraceLayer`] wraps a gRPC server's routes in.
#[derive(Debug, Clone)]
pub struct WorkerTraceService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for WorkerTraceService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = request_span(request.uri().path(), request.headers());
        // The handler runs (and builds its operators' streams) when this
        // future is polled, inside the span.
        self.inner.call(request).instrument(span)
    }
}

/// The `dftrace.worker` span for a request, or no span when the request
/// carries no usable trace context (the coordinator does not trace).
fn request_span(path: &str, headers: &HeaderMap) -> tracing::Span {
    let Some(parent) = remote_parent(headers) else {
        return tracing::Span::none();
    };
    let method = path.rsplit('/').next().unwrap_or(path);
    let span = tracing::info_span!(
        target: WORKER_TARGET,
        WORKER_SPAN_NAME,
        rpc.system = "grpc",
        rpc.method = method,
    );
    // Fails only without an OpenTelemetry layer; then there is no trace.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    span
}

/// The remote parent named by `traceparent` (and `tracestate`). A malformed
/// header is reported once per request and ignored: the query still runs.
fn remote_parent(headers: &HeaderMap) -> Option<SpanContext> {
    let traceparent = headers.get(TRACEPARENT)?;
    let parsed = traceparent
        .to_str()
        .map_err(|_| "it is not visible ASCII".to_owned())
        .and_then(|traceparent| {
            let tracestate = headers.get(TRACESTATE).and_then(|v| v.to_str().ok());
            dftrace_rules::parse_trace_context(traceparent, tracestate)
                .map_err(|error| error.to_string())
        });
    match parsed {
        Ok(parent) => Some(parent),
        Err(reason) => {
            tracing::warn!(
                target: WORKER_TARGET,
                "ignoring the request's traceparent {traceparent:?}: {reason}"
            );
            None
        }
    }
}

/// A datafusion-distributed `WorkerSessionBuilder` that builds each worker
/// session through the dftrace registry with `config` (the same config as
/// the coordinator's: presets, redaction, object stores), instruments the
/// plan the worker receives with that session's `Instrument` rule, and
/// passes the trace context on in the worker's own requests to other
/// workers (a stage reading a stage that runs elsewhere).
#[derive(Debug, Clone)]
pub struct WorkerSessions {
    config: DftraceConfig,
}

impl WorkerSessions {
    /// Sessions under `config`.
    pub fn new(config: DftraceConfig) -> Self {
        WorkerSessions { config }
    }
}

#[async_trait]
impl WorkerSessionBuilder for WorkerSessions {
    async fn build_session_state(
        &self,
        ctx: WorkerQueryContext,
    ) -> Result<SessionState, DataFusionError> {
        let WorkerQueryContext { builder, headers } = ctx;
        let mut state = builder.with_dftrace(&self.config)?.build_dftrace()?;
        // This worker's stage may read from stages on other workers: its
        // requests to them carry this request's span (or, without one, the
        // trace context it received), so their spans join the trace too.
        let mut forward = trace_context_headers(&tracing::Span::current());
        if forward.is_empty() {
            for name in [TRACEPARENT, TRACESTATE] {
                if let Some(value) = headers.get(name) {
                    forward.insert(name, value.clone());
                }
            }
        }
        if !forward.is_empty() {
            state.set_distributed_passthrough_headers(forward)?;
        }
        // Plans reach workers already optimized: the rule that wraps each
        // operator in its span runs as a worker plan rewrite instead. It
        // replaces nodes one for one, as such rewrites must.
        let instrument = state
            .physical_optimizers()
            .iter()
            .find(|rule| rule.name() == INSTRUMENT_RULE_NAME)
            .cloned();
        if let Some(rule) = instrument {
            state.set_distributed_worker_plan_rewrite_handler(
                move |event: WorkerPlanRewriteEvent<'_>| {
                    let plan = instrument_task(&rule, event.plan, event.session_config.options())?;
                    Ok(WorkerPlanRewriteEventResponse::new(plan))
                },
            );
        }
        Ok(state)
    }
}

/// A task's plan instrumented by `rule`, with its producer head left on top.
///
/// A task that feeds a shuffle or a broadcast has a `RepartitionExec` or
/// `BroadcastExec` on top, which datafusion-distributed replaces at run time
/// with a fresh one over the head's input (`ProducerHead::insert`, which
/// finds the head through wrappers' `downcast_delegate`). Instrumented
/// whole, the task would lose its root wrapper with the head, and none of
/// its operators would get a span; so the head stays bare, its input is
/// instrumented (the root under the head), and the head's replacement runs
/// that input (inside the request's `dftrace.worker` span, where the root
/// becomes the worker's root). The head itself gets no span: the node that
/// runs is always the replacement.
fn instrument_task(
    rule: &Arc<dyn PhysicalOptimizerRule + Send + Sync>,
    plan: Arc<dyn ExecutionPlan>,
    options: &ConfigOptions,
) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
    let is_producer_head = plan.downcast_ref::<RepartitionExec>().is_some()
        || plan.downcast_ref::<BroadcastExec>().is_some();
    let input = match plan.children().as_slice() {
        [input] if is_producer_head => Some(Arc::clone(input)),
        _ => None,
    };
    let Some(input) = input else {
        return rule.optimize(plan, options);
    };
    let input = rule.optimize(input, options)?;
    plan.replace_children(
        vec![input],
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_and_tracestate_name_the_remote_parent() {
        let parent = remote_parent(&headers(&[
            (TRACEPARENT, PARENT),
            (TRACESTATE, "vendor=abc"),
        ]))
        .unwrap();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_sampled() && parent.is_remote());
        assert_eq!(parent.trace_state().get("vendor"), Some("abc"));
    }

    #[test]
    fn a_missing_or_malformed_traceparent_means_no_parent_and_no_panic() {
        assert!(remote_parent(&HeaderMap::new()).is_none());
        for bad in [
            "",
            "00-nothex-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736",
            "garbage",
        ] {
            assert!(
                remote_parent(&headers(&[(TRACEPARENT, bad)])).is_none(),
                "{bad}"
            );
        }
        // No trace context: the request runs without a span.
        assert!(request_span("/worker.WorkerService/ExecuteTask", &HeaderMap::new()).is_none());
    }
}
