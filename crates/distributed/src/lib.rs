//! `dftrace-distributed`: one trace across a distributed DataFusion query run
//! by [`datafusion-distributed`](https://crates.io/crates/datafusion-distributed)
//! 4.x workers.
//!
//! Three pieces, each on one of the engine's own extension points:
//!
//! - **Coordinator** — [`with_trace_context`] stamps the query span's W3C
//!   `traceparent` / `tracestate` on the DataFrame's session as
//!   datafusion-distributed *passthrough headers*, which the engine sends as
//!   gRPC metadata with every plan and every task request to the workers.
//! - **Worker requests** — [`WorkerTraceLayer`], a tower layer for the
//!   worker's gRPC server, opens a `dftrace.worker` span per request whose
//!   parent is the remote span those headers name. The worker builds its
//!   operators' streams inside that request, so their spans nest under it.
//! - **Worker sessions** — [`WorkerSessions`], a `WorkerSessionBuilder` that
//!   builds each worker session through the dftrace registry (same presets,
//!   same redaction as the coordinator) and instruments the plan the worker
//!   receives with that session's `Instrument` rule (plans arrive already
//!   optimized, so the rule is applied by a worker plan-rewrite handler).
//!
//! Each worker process runs `dftrace-bootstrap` itself and names itself with
//! `service.instance.id` (for example through `OTEL_RESOURCE_ATTRIBUTES`);
//! all processes export to the same collector, where the spans form one
//! trace. [`plan_with_worker_metrics`] folds the workers' metrics into the
//! coordinator's plan for the query's metrics summary.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod context;
mod worker;

pub use context::{
    TRACEPARENT, TRACESTATE, plan_with_worker_metrics, trace_context_headers, with_trace_context,
};
pub use worker::{
    WORKER_SPAN_NAME, WORKER_TARGET, WorkerSessions, WorkerTraceLayer, WorkerTraceService,
};
