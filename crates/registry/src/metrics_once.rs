//! Each node's metrics read once per query end.
//!
//! At a query's end dftrace-rules builds the operator spans and then the
//! observers (the metrics summary) walk the same plan: each would ask every
//! node for its metrics. A node's `metrics()` builds a new set each time,
//! and a node behind DataFusion's FFI (a datafusion-python session's)
//! converts every metric across the boundary. Inside
//! [`read_metrics_once`], [`node_metrics`] reads each node's once and hands
//! out copies.

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricsSet;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// The metrics read so far, by node, while a [`read_metrics_once`] runs
    /// on this thread.
    static READ: RefCell<Option<HashMap<usize, Option<MetricsSet>>>> = const { RefCell::new(None) };
}

/// Runs `f` with each node's metrics read at most once by [`node_metrics`]
/// on this thread (the plans must stay alive while it runs, as they do in a
/// query-end job that holds them). Nested calls share the outer one's.
pub fn read_metrics_once<R>(f: impl FnOnce() -> R) -> R {
    /// Forgets what was read, also when `f` panics.
    struct Forget(bool);
    impl Drop for Forget {
        fn drop(&mut self) {
            if self.0 {
                READ.with(|read| read.borrow_mut().take());
            }
        }
    }
    let outermost = READ.with(|read| {
        let mut read = read.borrow_mut();
        let outermost = read.is_none();
        if outermost {
            *read = Some(HashMap::new());
        }
        outermost
    });
    let _forget = Forget(outermost);
    f()
}

/// `node.metrics()`, read once per node inside [`read_metrics_once`]. A
/// wrapper that delegates its downcasts (`ExecutionPlan::downcast_delegate`)
/// reports its node's metrics, so the node it wraps is the one asked.
pub fn node_metrics(node: &dyn ExecutionPlan) -> Option<MetricsSet> {
    let mut node = node;
    while let Some(inner) = node.downcast_delegate() {
        node = inner;
    }
    let key = std::ptr::from_ref(node).cast::<()>() as usize;
    let known = READ.with(|read| read.borrow().as_ref().map(|read| read.get(&key).cloned()));
    match known {
        // Not inside `read_metrics_once`.
        None => node.metrics(),
        Some(Some(metrics)) => metrics,
        Some(None) => {
            let metrics = node.metrics();
            READ.with(|read| {
                if let Some(read) = read.borrow_mut().as_mut() {
                    read.insert(key, metrics.clone());
                }
            });
            metrics
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::error::Result;
    use datafusion::execution::{SendableRecordBatchStream, TaskContext};
    use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
    use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
    use datafusion::physical_plan::{DisplayAs, DisplayFormatType, Partitioning, PlanProperties};
    use std::fmt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A leaf that counts how often its metrics are read; or, with
    /// `inner`, a wrapper that delegates its downcasts and metrics to it.
    #[derive(Debug)]
    struct Node {
        reads: AtomicUsize,
        inner: Option<Arc<Node>>,
        properties: Arc<PlanProperties>,
    }

    impl Node {
        fn new(inner: Option<Arc<Node>>) -> Arc<Node> {
            Arc::new(Node {
                reads: AtomicUsize::new(0),
                inner,
                properties: Arc::new(PlanProperties::new(
                    EquivalenceProperties::new(Arc::new(Schema::empty())),
                    Partitioning::UnknownPartitioning(1),
                    EmissionType::Incremental,
                    Boundedness::Bounded,
                )),
            })
        }
    }

    impl DisplayAs for Node {
        fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Node")
        }
    }

    impl ExecutionPlan for Node {
        fn name(&self) -> &str {
            "Node"
        }
        fn properties(&self) -> &Arc<PlanProperties> {
            &self.properties
        }
        fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
            Vec::new()
        }
        fn with_new_children(
            self: Arc<Self>,
            _: Vec<Arc<dyn ExecutionPlan>>,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            Ok(self)
        }
        fn apply_expressions(
            &self,
            _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
        ) -> Result<TreeNodeRecursion> {
            Ok(TreeNodeRecursion::Continue)
        }
        fn downcast_delegate(&self) -> Option<&dyn ExecutionPlan> {
            self.inner
                .as_deref()
                .map(|inner| inner as &dyn ExecutionPlan)
        }
        fn execute(&self, _: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
            unimplemented!("never run")
        }
        fn metrics(&self) -> Option<MetricsSet> {
            match &self.inner {
                Some(inner) => inner.metrics(),
                None => {
                    self.reads.fetch_add(1, Ordering::Relaxed);
                    Some(MetricsSet::new())
                }
            }
        }
    }

    #[test]
    fn a_nodes_metrics_are_read_once_inside_and_every_time_outside() {
        let leaf = Node::new(None);
        let wrapper = Node::new(Some(Arc::clone(&leaf)));
        read_metrics_once(|| {
            assert!(node_metrics(leaf.as_ref()).is_some());
            assert!(node_metrics(wrapper.as_ref()).is_some());
            // Nested: still the outer one's.
            read_metrics_once(|| node_metrics(leaf.as_ref()));
            assert!(node_metrics(leaf.as_ref()).is_some());
        });
        assert_eq!(
            leaf.reads.load(Ordering::Relaxed),
            1,
            "once, through the wrapper too"
        );
        node_metrics(leaf.as_ref());
        node_metrics(wrapper.as_ref());
        assert_eq!(
            leaf.reads.load(Ordering::Relaxed),
            3,
            "forgotten after it ends"
        );
    }
}
