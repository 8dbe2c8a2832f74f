//! What the wrappers note while a query runs, and where the operators that
//! ran wait for the query's end.

use crate::span_helpers::now_unix_ns;
use datafusion::arrow::array::{Array, ArrayRef, BinaryViewArray, StringViewArray, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::{ExecutionPlan, displayable};
use dftrace_registry::literals::QueryLiterals;
use dftrace_registry::{SourcedPreviewFn, SpanLevel};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tracing::Span;
use tracing_subscriber::registry::{LookupSpan, Registry, SpanData as _};

/// What one operator's streams noted: the earliest start and latest end over
/// its partitions, the first error it saw, and (with previews on) copies of
/// its first rows.
#[derive(Debug)]
pub(crate) struct NodeRecord {
    /// Unix ns of the first poll of any partition; `u64::MAX` until then.
    first_start: AtomicU64,
    /// Unix ns of the last partition end; 0 until then.
    last_end: AtomicU64,
    error: OnceLock<String>,
    preview: Option<PreviewRows>,
    /// Deferred mode: how the node's span is built.
    deferred: Option<Arc<DeferredOptions>>,
    /// Under a live `InstrumentedExec` span: what to put on that span.
    live: Option<Arc<LiveFields>>,
    /// Handed to a collector already.
    registered: AtomicBool,
    /// Marks the thread while the node's streams are polled
    /// (`dftrace_registry::current_operator`).
    key: dftrace_registry::OperatorKey,
    /// The node's one-line description and output partitioning, masked,
    /// taken before it ran.
    description: OnceLock<Description>,
    /// What it has done so far, for `dftrace.running_operators`: relaxed
    /// adds per batch, read only when a running query is looked at.
    progress: Progress,
    /// `metrics-only`: the record of a node no wrapper sits around (nothing
    /// is noted while it runs; its interval comes from its metrics).
    unwrapped: bool,
    /// `metrics-only`: the record of a plan's top, the only node wrapped.
    top_only: bool,
    /// `metrics-only`, on the top's record: the nodes under it, each with
    /// its unwrapped record, handed to the collector with the top.
    unwrapped_descendants: OnceLock<Vec<Executed>>,
}

/// An operator's figures while it runs.
#[derive(Debug, Default)]
struct Progress {
    rows: AtomicU64,
    batches: AtomicU64,
    started: AtomicU64,
    done: AtomicU64,
}

/// What dftrace adds to `datafusion-tracing`'s live operator spans, which
/// upstream's stream has entered whenever this node's stream is polled: the
/// host's custom fields (once per span) and an ERROR status on the operator
/// where an error started.
#[derive(Debug, Default)]
pub(crate) struct LiveFields {
    pub(crate) custom_fields: Vec<(String, String)>,
    /// `rules.record_literals`: error statuses keep the values they quote.
    pub(crate) record_literals: bool,
}

#[derive(Debug)]
struct PreviewRows {
    limit: usize,
    full: AtomicBool,
    /// Copies (never slices, which would pin the source batches).
    rows: Mutex<Vec<RecordBatch>>,
}

impl NodeRecord {
    /// An empty record for a node whose span is built at query end
    /// (`deferred`) or that runs under a live span (`live`); `preview_limit`
    /// rows are kept when it is above 0.
    pub(crate) fn new(
        preview_limit: usize,
        deferred: Option<Arc<DeferredOptions>>,
        live: Option<Arc<LiveFields>>,
    ) -> Self {
        NodeRecord {
            first_start: AtomicU64::new(u64::MAX),
            last_end: AtomicU64::new(0),
            error: OnceLock::new(),
            preview: (preview_limit > 0).then(|| PreviewRows {
                limit: preview_limit,
                full: AtomicBool::new(false),
                rows: Mutex::new(Vec::new()),
            }),
            deferred,
            live,
            registered: AtomicBool::new(false),
            key: dftrace_registry::OperatorKey::unique(),
            description: OnceLock::new(),
            progress: Progress::default(),
            unwrapped: false,
            top_only: false,
            unwrapped_descendants: OnceLock::new(),
        }
    }

    /// The record of a plan's top whose nodes below carry no wrapper
    /// (`metrics-only`).
    pub(crate) fn top_only(preview_limit: usize, deferred: Arc<DeferredOptions>) -> Self {
        NodeRecord {
            top_only: true,
            ..NodeRecord::new(preview_limit, Some(deferred), None)
        }
    }

    /// The record of a node no wrapper sits around (`metrics-only`).
    pub(crate) fn unwrapped(deferred: Arc<DeferredOptions>) -> Self {
        NodeRecord {
            unwrapped: true,
            ..NodeRecord::new(0, Some(deferred), None)
        }
    }

    /// On a top's record (`metrics-only`), unless done: the nodes under it
    /// with their records, from `descendants`, handed to the collector with
    /// the top.
    pub(crate) fn note_unwrapped_descendants(
        &self,
        descendants: impl FnOnce(&Arc<DeferredOptions>) -> Vec<Executed>,
    ) {
        if self.top_only
            && let Some(deferred) = &self.deferred
        {
            self.unwrapped_descendants
                .get_or_init(|| descendants(deferred));
        }
    }

    /// Whether no wrapper sits around the node (`metrics-only`).
    pub(crate) fn is_unwrapped(&self) -> bool {
        self.unwrapped
    }

    /// Takes `node`'s one-line description and output partitioning, masked
    /// with `literals` (the node's own literal values added first). Taken
    /// before the node runs: afterwards its dynamic filters can show values
    /// of the data.
    pub(crate) fn describe(&self, node: &dyn ExecutionPlan, literals: &QueryLiterals) {
        self.description.get_or_init(|| {
            crate::literals::add_node(literals, node);
            let text = displayable(node).one_line().to_string();
            let partitioning = node.properties().partitioning.to_string();
            Description {
                node: literals.masked(text.trim_end().to_owned()).into(),
                partitioning: literals.masked(partitioning).into(),
            }
        });
    }

    /// The description [`NodeRecord::describe`] took.
    pub(crate) fn description(&self) -> Option<&Description> {
        self.description.get()
    }

    /// The node's operator key.
    pub(crate) fn key(&self) -> dftrace_registry::OperatorKey {
        self.key
    }

    /// An empty record with the same settings (a top's record stays one:
    /// the nodes under the new node get their records at its first
    /// `execute`).
    pub(crate) fn fresh_like(&self) -> Self {
        NodeRecord {
            top_only: self.top_only,
            ..NodeRecord::new(
                self.preview.as_ref().map_or(0, |p| p.limit),
                self.deferred.clone(),
                self.live.clone(),
            )
        }
    }

    /// How the node's deferred span is built (`None` under live spans).
    pub(crate) fn deferred(&self) -> Option<&DeferredOptions> {
        self.deferred.as_deref()
    }

    /// The live-span additions, when the node runs under a live span.
    pub(crate) fn live(&self) -> Option<&LiveFields> {
        self.live.as_deref()
    }

    /// At an `execute` of a plan's top (`metrics-only`): its interval
    /// starts there, before the nodes under it make their streams (where
    /// their metrics' intervals start), so theirs lie within it.
    pub(crate) fn note_top_execute(&self) {
        if self.top_only {
            self.first_start.fetch_min(now_unix_ns(), Ordering::Relaxed);
        }
    }

    pub(crate) fn note_start(&self) {
        self.first_start.fetch_min(now_unix_ns(), Ordering::Relaxed);
        self.progress.started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_end(&self) {
        self.last_end.fetch_max(now_unix_ns(), Ordering::Relaxed);
        self.progress.done.fetch_add(1, Ordering::Relaxed);
    }

    /// A partition produced `rows` rows in one batch.
    pub(crate) fn note_batch(&self, rows: usize) {
        self.progress.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.progress.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// (rows, batches, partitions started, partitions ended) so far.
    pub(crate) fn progress(&self) -> (u64, u64, u64, u64) {
        let progress = &self.progress;
        (
            progress.rows.load(Ordering::Relaxed),
            progress.batches.load(Ordering::Relaxed),
            progress.started.load(Ordering::Relaxed),
            progress.done.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn note_error(&self, error: &DataFusionError) {
        self.error.get_or_init(|| error.to_string());
    }

    /// Keeps copies of `batch`'s rows while fewer than the limit are kept.
    pub(crate) fn offer_preview(&self, batch: &RecordBatch) {
        let Some(preview) = &self.preview else { return };
        if preview.full.load(Ordering::Relaxed) || batch.num_rows() == 0 {
            return;
        }
        let mut rows = preview.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let kept: usize = rows.iter().map(RecordBatch::num_rows).sum();
        let wanted = preview.limit.saturating_sub(kept).min(batch.num_rows());
        if wanted > 0
            && let Ok(copy) = owned_rows(batch, wanted)
        {
            rows.push(copy);
        }
        if kept + wanted >= preview.limit {
            preview.full.store(true, Ordering::Relaxed);
        }
    }

    /// Unix ns of the first start, if any stream started.
    pub(crate) fn first_start(&self) -> Option<u64> {
        let ns = self.first_start.load(Ordering::Relaxed);
        (ns != u64::MAX).then_some(ns)
    }

    /// Unix ns of the last end, if any stream ended.
    pub(crate) fn last_end(&self) -> Option<u64> {
        let ns = self.last_end.load(Ordering::Relaxed);
        (ns != 0).then_some(ns)
    }

    pub(crate) fn error(&self) -> Option<&str> {
        self.error.get().map(String::as_str)
    }

    /// The rows kept for the preview (empty when previews are off).
    pub(crate) fn preview_rows(&self) -> Vec<RecordBatch> {
        self.preview.as_ref().map_or_else(Vec::new, |preview| {
            preview
                .rows
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }
}

/// What a node's span says of it, taken before it ran: shared, not copied,
/// by each span built from it.
#[derive(Debug, Clone)]
pub(crate) struct Description {
    /// `datafusion.node`.
    pub(crate) node: Arc<str>,
    /// `datafusion.partitioning`.
    pub(crate) partitioning: Arc<str>,
}

/// The first `n` rows of `batch` in buffers of their own.
fn owned_rows(batch: &RecordBatch, n: usize) -> Result<RecordBatch> {
    let indices = UInt32Array::from_iter_values(0..u32::try_from(n).unwrap_or(u32::MAX));
    let taken = take_record_batch(batch, &indices)?;
    // `take` of a view array copies the views but shares the data buffers:
    // compact those too.
    let columns: Vec<ArrayRef> = taken
        .columns()
        .iter()
        .map(|column| {
            if let Some(views) = column.as_any().downcast_ref::<StringViewArray>() {
                Arc::new(views.gc()) as ArrayRef
            } else if let Some(views) = column.as_any().downcast_ref::<BinaryViewArray>() {
                Arc::new(views.gc()) as ArrayRef
            } else {
                Arc::clone(column)
            }
        })
        .collect();
    Ok(RecordBatch::try_new(taken.schema(), columns)?)
}

/// How the operator spans of a plan are built at query end (the deferred
/// mode; every node's record carries them).
pub(crate) struct DeferredOptions {
    pub(crate) level: SpanLevel,
    pub(crate) record_metrics: bool,
    pub(crate) metrics_level: crate::config::MetricsLevel,
    pub(crate) estimated_rows: bool,
    pub(crate) preview: Option<Arc<SourcedPreviewFn>>,
    /// Keep literal values in what the spans show (`rules.record_literals`).
    pub(crate) record_literals: bool,
    pub(crate) custom_fields: Vec<(String, String)>,
    pub(crate) when: crate::config::OperatorSpansWhen,
    pub(crate) slow: Duration,
}

impl std::fmt::Debug for DeferredOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredOptions")
            .field("level", &self.level)
            .field("preview", &self.preview.is_some())
            .field("custom_fields", &self.custom_fields.len())
            .field("when", &self.when)
            .field("slow", &self.slow)
            .finish()
    }
}

/// One operator that ran: the node it wraps (as it ran, with its metrics)
/// and its record.
#[derive(Debug, Clone)]
pub(crate) struct Executed {
    pub(crate) inner: Arc<dyn ExecutionPlan>,
    pub(crate) record: Arc<NodeRecord>,
}

/// The operators that ran for one query (or, on a worker, one plan), in the
/// order they first ran. It sits in the registry extensions of the span the
/// query runs in, where each operator finds it at its first `execute`: the
/// operators that ran are the ones that count, even when a plan was rebuilt
/// after planning (a distributed stage, a recursive query's iterations).
#[derive(Debug, Default)]
pub(crate) struct Collector {
    executed: Mutex<Vec<Executed>>,
}

impl Collector {
    /// Everything collected so far, leaving the collector empty.
    pub(crate) fn take(&self) -> Vec<Executed> {
        std::mem::take(&mut *self.executed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether an operator has run.
    pub(crate) fn has_executed(&self) -> bool {
        !self
            .executed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Everything collected so far, left in place (a running query looked at).
    pub(crate) fn snapshot(&self) -> Vec<Executed> {
        self.executed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|node| Executed {
                inner: Arc::clone(&node.inner),
                record: Arc::clone(&node.record),
            })
            .collect()
    }

    /// Puts `collector` in `span`'s registry extensions (once), where the
    /// operators running inside `span` find it.
    pub(crate) fn attach(collector: &Arc<Collector>, span: &Span) {
        span.with_subscriber(|(id, dispatch)| {
            let Some(data) = dispatch
                .downcast_ref::<Registry>()
                .and_then(|registry| registry.span_data(id))
            else {
                return;
            };
            let mut extensions = data.extensions_mut();
            if extensions.get_mut::<Arc<Collector>>().is_none() {
                extensions.insert(Arc::clone(collector));
            }
        });
    }
}

/// The collector of the nearest span, among the current span and its
/// ancestors, that holds one.
fn current_collector() -> Option<Arc<Collector>> {
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let id = dispatch.current_span().id().cloned()?;
        let span = registry.span(&id)?;
        span.scope()
            .find_map(|span| span.extensions().get::<Arc<Collector>>().cloned())
    })
}

impl NodeRecord {
    /// At the node's first `execute`: hands the node to the collector of the
    /// span it runs in (deferred mode only).
    pub(crate) fn note_executed(self: &Arc<Self>, inner: &Arc<dyn ExecutionPlan>) {
        if self.deferred.is_none() || self.registered.swap(true, Ordering::Relaxed) {
            return;
        }
        // A node made after planning (a recursive query's next iteration, a
        // worker's plan) is described at its first `execute`, before its
        // streams run.
        if self.description.get().is_none() {
            self.describe(inner.as_ref(), &crate::literals::current());
        }
        match current_collector() {
            Some(collector) => {
                let mut executed = collector
                    .executed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                executed.push(Executed {
                    inner: Arc::clone(inner),
                    record: Arc::clone(self),
                });
                if let Some(descendants) = self.unwrapped_descendants.get() {
                    executed.extend(descendants.iter().cloned());
                }
            }
            // Run outside any query: perhaps a later execute is inside one.
            None => self.registered.store(false, Ordering::Relaxed),
        }
    }
}
