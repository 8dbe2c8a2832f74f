//! Spans follow DataFusion's spawned tasks.
//!
//! DataFusion runs parts of a plan on tasks of their own (repartitioning,
//! merging, file scans). A `JoinSetTracer` makes each task run inside the
//! span that was current when it was spawned, so storage spans made on those
//! tasks land under their query. `datafusion-tracing` installs such a
//! tracer for its live spans; the deferred mode installs this one. Either
//! makes the same choice, and only one can be installed in a process.

use datafusion::common::runtime::{JoinSetTracer, set_join_set_tracer};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::any::Any;
use std::sync::Once;
use tracing::Instrument;

struct CurrentSpan;

impl JoinSetTracer for CurrentSpan {
    fn trace_future(
        &self,
        fut: BoxFuture<'static, Box<dyn Any + Send>>,
    ) -> BoxFuture<'static, Box<dyn Any + Send>> {
        fut.in_current_span().boxed()
    }

    fn trace_block(
        &self,
        f: Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>,
    ) -> Box<dyn FnOnce() -> Box<dyn Any + Send> + Send> {
        let span = tracing::Span::current();
        Box::new(move || span.in_scope(f))
    }
}

/// Installs the tracer once per process. When another one is installed
/// already (`datafusion-tracing`'s, which does the same), that one stays.
pub(crate) fn follow_spawned_tasks() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = set_join_set_tracer(&CurrentSpan);
    });
}
