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
/// on this thread. The plans must stay alive while it runs (as in a
/// query-end job, which holds them): nodes are known by their address. A
/// nested call (a query that ends inside an observer) reads afresh, and the
/// outer call's reads are back when it returns.
pub fn read_metrics_once<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the outer call's reads back, also when `f` panics.
    struct Restore {
        outer: Option<HashMap<usize, Option<MetricsSet>>>,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.outer.take();
            READ.with(|read| *read.borrow_mut() = outer);
        }
    }
    let outer = READ.with(|read| read.borrow_mut().replace(HashMap::new()));
    let _restore = Restore { outer };
    f()
}

/// `node.metrics()`, read once per node inside [`read_metrics_once`]. A
/// wrapper that reports the metrics of the node it wraps calls this for
/// that node (dftrace-rules' operator wrapper does), so a walk over the
/// wrappers and one over the nodes they wrap share their reads.
pub fn node_metrics(node: &dyn ExecutionPlan) -> Option<MetricsSet> {
    let key = std::ptr::from_ref(node).cast::<()>() as usize;
    let known = READ.with(|read| read.borrow().as_ref().map(|read| read.get(&key).cloned()));
    match known {
        // Not inside `read_metrics_once`.
        None => node.metrics(),
        Some(Some(metrics)) => metrics,
        Some(None) => {
            // Read with no borrow held: the node may be a wrapper that asks
            // for the node it wraps.
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

    /// How a node reports its metrics.
    #[derive(Debug)]
    enum Kind {
        /// Its own, counting the reads.
        Leaf(AtomicUsize),
        /// Its node's, asked through `node_metrics` (dftrace's wrapper).
        Transparent(Arc<Node>),
        /// Delegates downcasts but reports metrics of its own (as
        /// datafusion-distributed's wrapper of a worker's metrics does).
        OwnMetrics(Arc<Node>),
    }

    #[derive(Debug)]
    struct Node {
        kind: Kind,
        properties: Arc<PlanProperties>,
    }

    impl Node {
        fn new(kind: Kind) -> Arc<Node> {
            Arc::new(Node {
                kind,
                properties: Arc::new(PlanProperties::new(
                    EquivalenceProperties::new(Arc::new(Schema::empty())),
                    Partitioning::UnknownPartitioning(1),
                    EmissionType::Incremental,
                    Boundedness::Bounded,
                )),
            })
        }

        fn reads(&self) -> usize {
            match &self.kind {
                Kind::Leaf(reads) => reads.load(Ordering::Relaxed),
                Kind::Transparent(_) | Kind::OwnMetrics(_) => 0,
            }
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
            match &self.kind {
                Kind::Leaf(_) => None,
                Kind::Transparent(inner) | Kind::OwnMetrics(inner) => {
                    Some(inner.as_ref() as &dyn ExecutionPlan)
                }
            }
        }
        fn execute(&self, _: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
            // Only its metrics are read.
            datafusion::common::internal_err!("a node of the metrics tests is not run")
        }
        fn metrics(&self) -> Option<MetricsSet> {
            match &self.kind {
                Kind::Leaf(reads) => {
                    reads.fetch_add(1, Ordering::Relaxed);
                    Some(MetricsSet::new())
                }
                Kind::Transparent(inner) => node_metrics(inner.as_ref()),
                Kind::OwnMetrics(_) => None,
            }
        }
    }

    #[test]
    fn a_nodes_metrics_are_read_once_inside_and_every_time_outside() {
        let leaf = Node::new(Kind::Leaf(AtomicUsize::new(0)));
        let wrapper = Node::new(Kind::Transparent(Arc::clone(&leaf)));
        read_metrics_once(|| {
            assert!(node_metrics(leaf.as_ref()).is_some());
            assert!(node_metrics(wrapper.as_ref()).is_some());
            assert!(node_metrics(leaf.as_ref()).is_some());
        });
        assert_eq!(leaf.reads(), 1, "once, through the wrapper too");
        node_metrics(leaf.as_ref());
        node_metrics(wrapper.as_ref());
        assert_eq!(leaf.reads(), 3, "forgotten after it ends");
    }

    #[test]
    fn a_wrapper_with_metrics_of_its_own_reports_them() {
        let leaf = Node::new(Kind::Leaf(AtomicUsize::new(0)));
        let wrapper = Node::new(Kind::OwnMetrics(Arc::clone(&leaf)));
        read_metrics_once(|| {
            assert!(node_metrics(leaf.as_ref()).is_some());
            assert!(
                node_metrics(wrapper.as_ref()).is_none(),
                "its own, not its node's"
            );
        });
    }

    #[test]
    fn a_nested_call_reads_afresh_and_the_outer_reads_come_back() {
        let leaf = Node::new(Kind::Leaf(AtomicUsize::new(0)));
        read_metrics_once(|| {
            node_metrics(leaf.as_ref());
            read_metrics_once(|| node_metrics(leaf.as_ref()));
            assert_eq!(leaf.reads(), 2, "the nested call read afresh");
            node_metrics(leaf.as_ref());
            assert_eq!(leaf.reads(), 2, "the outer reads are back");
        });
    }
}
