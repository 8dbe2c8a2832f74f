//! What plugins do to a DataFusion session: hooks, their context, and the
//! services plugins hand to each other.

use crate::config::{DftraceConfig, Section};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A hook on the `SessionStateBuilder`, before the state is built.
pub type BuilderHook = fn(
    SessionStateBuilder,
    &mut PluginContext<'_>,
) -> datafusion::error::Result<SessionStateBuilder>;

/// A hook on the built `SessionState` (planner rule wrapping needs the state).
pub type StateHook =
    fn(SessionState, &mut PluginContext<'_>) -> datafusion::error::Result<SessionState>;

/// Shared values that plugins hand to each other (and to the host) by type:
/// an earlier-stage plugin inserts, a later one reads.
#[derive(Default, Clone)]
pub struct Services {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Services {
    /// Stores `value`, replacing any earlier value of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: Arc<T>) {
        self.values.insert(TypeId::of::<T>(), value);
    }

    /// The value of type `T`, if a plugin provided one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|value| value.downcast().ok())
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("count", &self.values.len())
            .finish()
    }
}

/// What a hook sees: the config and the services of the session being built.
#[derive(Debug)]
pub struct PluginContext<'a> {
    config: &'a DftraceConfig,
    services: &'a mut Services,
}

impl<'a> PluginContext<'a> {
    pub(crate) fn new(config: &'a DftraceConfig, services: &'a mut Services) -> Self {
        PluginContext { config, services }
    }

    /// The configuration being applied.
    pub fn config(&self) -> &DftraceConfig {
        self.config
    }

    /// The typed section `S` of the configuration, as a DataFusion error on
    /// failure so hooks can use `?`.
    pub fn section<S: Section>(&self) -> datafusion::error::Result<S> {
        self.config
            .section::<S>()
            .map_err(|error| datafusion::error::DataFusionError::External(Box::new(error)))
    }

    /// The services plugins provide to each other.
    pub fn services(&mut self) -> &mut Services {
        self.services
    }
}

/// The runtime environment `builder` will build its session with: the
/// host's, or the default one `SessionStateBuilder::build` would make. For
/// hooks that wrap a part of it (the memory pool, the caches, the object
/// store registry) and set it back.
pub fn builder_runtime_env(builder: &mut SessionStateBuilder) -> Arc<RuntimeEnv> {
    builder
        .runtime_env()
        .clone()
        .unwrap_or_else(|| Arc::new(RuntimeEnv::default()))
}

/// The signature of a row-preview formatter, as `datafusion-tracing` calls it.
pub type PreviewFn = dyn Fn(
        &datafusion::arrow::record_batch::RecordBatch,
    ) -> std::result::Result<String, datafusion::arrow::error::ArrowError>
    + Send
    + Sync;

/// Where a preview column's values come from, and where they go, as far as
/// the executed plan tells: the scanned fields it is computed from (dotted
/// paths for nested fields, `user.email`), whether a literal value of the
/// query flows into it, and the names its values take in the operators
/// above it (`column3 AS password`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ColumnSources {
    /// Computed from `fields` (and from literals of the query, when
    /// `literal`); no fields and no literal: from nothing a policy can name
    /// (`count(*)`).
    Known {
        /// The scanned fields, as dotted paths.
        fields: Vec<String>,
        /// A literal value of the query flows into the column (only set when
        /// literals are to be kept out of traces).
        literal: bool,
        /// The output names of the columns above that show this column's
        /// values (through aliases, expressions, aggregates): a policy that
        /// masks one of those names masks this column too.
        names_above: Vec<String>,
    },
    /// A derivation dftrace does not follow: counts as denied.
    #[default]
    Unknown,
}

/// A row-preview formatter that also knows each column's sources (one per
/// column of the batch), so it can mask a column derived from a denied one.
pub type SourcedPreviewFn = dyn Fn(
        &datafusion::arrow::record_batch::RecordBatch,
        &[ColumnSources],
    ) -> std::result::Result<String, datafusion::arrow::error::ArrowError>
    + Send
    + Sync;

/// The service a preview plugin provides (e.g. `dftrace-preview-redaction`'s
/// redacting formatter) and the rules plugin uses for operator previews:
/// by column names alone (what `datafusion-tracing`'s live previews call),
/// and, for previews built from the executed plan, with each column's
/// sources.
#[derive(Clone)]
pub struct PreviewFormatter {
    /// Masks by the batch's column names.
    pub by_name: Arc<PreviewFn>,
    /// Masks by column names and by where each column comes from.
    pub by_sources: Arc<SourcedPreviewFn>,
}

impl fmt::Debug for PreviewFormatter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreviewFormatter(..)")
    }
}

/// The smallest, middle (the lower median) and largest of an operator's
/// per-partition figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// The smallest partition's figure.
    pub min: u64,
    /// The lower median over partitions.
    pub median: u64,
    /// The largest partition's figure.
    pub max: u64,
}

/// One operator of a query as it ran: the figures its deferred operator
/// span carries (`dftrace-rules`), typed, for observers that keep them
/// (such as `dftrace-history`'s `dftrace.operators` table).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorFigures {
    /// Its position in the query, top first (`dftrace.operator.index`).
    pub id: u64,
    /// The `id` of the operator it feeds; `None` at the top of a plan.
    pub parent: Option<u64>,
    /// The operator's name (`SortExec`).
    pub name: String,
    /// DataFusion's one-line description, as `datafusion.node` shows it
    /// (the query's literals masked, taken before the operator ran).
    pub description: String,
    /// First partition start and last partition end, Unix nanoseconds.
    pub start_unix_ns: u64,
    /// See `start_unix_ns`.
    pub end_unix_ns: u64,
    /// Output partitions.
    pub partitions: u64,
    /// Its own compute time (`elapsed_compute` over partitions).
    pub self_time_ns: Option<u64>,
    /// Rows it produced.
    pub output_rows: Option<u64>,
    /// DataFusion's estimate of its output rows.
    pub estimated_rows: Option<u64>,
    /// Rows over partitions.
    pub rows_spread: Option<Spread>,
    /// Own time over partitions.
    pub self_time_spread: Option<Spread>,
    /// Bytes it spilled to disk.
    pub spilled_bytes: Option<u64>,
    /// The most memory pool reservation its partitions held at once
    /// (`dftrace-memory`, when on).
    pub peak_memory_bytes: Option<u64>,
    /// Every integer metric, by DataFusion's (or the host's) metric name
    /// with dftrace's suffix (`elapsed_compute_ns`, `row_groups_pruned_statistics.pruned`).
    pub metrics: Vec<(String, i64)>,
    /// An error started at this operator.
    pub failed: bool,
}

/// An operator that ran in the query, as dftrace-rules' deferred operator
/// spans know it: what an observer needs to name the operator a
/// [`crate::current_operator`] key stood for, and to hang a span under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RanOperator {
    /// The key its streams set while polled.
    pub key: crate::OperatorKey,
    /// Its position in its plan, top first (`dftrace.operator.index`).
    pub index: u64,
    /// The operator's name (`ProjectionExec`).
    pub name: String,
    /// Its span's OpenTelemetry span id, when the span was built.
    pub span_id: Option<[u8; 8]>,
}

/// What a [`QueryObserver`] sees when a query ends, while its root span is
/// still open (so attributes recorded on it are exported).
#[derive(Debug)]
pub struct QueryEnd<'a> {
    /// The root query span.
    pub span: &'a tracing::Span,
    /// The run id on the root span.
    pub run_id: &'a str,
    /// The literal-free SQL fingerprint, when the SQL text is known.
    pub fingerprint: Option<&'a str>,
    /// The SQL text, only when `rules.record_sql` is on.
    pub sql: Option<&'a str>,
    /// When the root span started.
    pub started: std::time::SystemTime,
    /// The operators that ran, when an observer asked for them
    /// ([`QueryObserver::wants_operators`]); empty for a query whose trace
    /// is known not to be sampled (its operators are not wrapped).
    pub operators: &'a [OperatorFigures],
    /// Every operator that ran (deferred operator spans only; empty for a
    /// query whose trace is not sampled, and with live operator spans).
    pub ran_operators: &'a [RanOperator],
    /// The executed physical plan, with its metrics, when the host has it.
    pub plan: Option<&'a Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
    /// Time from the root span's start to the end of the query.
    pub elapsed: std::time::Duration,
    /// Rows returned, on success.
    pub rows: Option<usize>,
    /// The error message, on failure.
    pub error: Option<String>,
    /// The query was dropped before its end (its stream dropped: cancelled,
    /// or its consumer stopped reading); `rows` and `error` are `None`.
    pub cancelled: bool,
    /// The query's trace is known not to be sampled: nothing of it will be
    /// exported, so observers can skip work meant only for its spans.
    pub unsampled: bool,
}

/// Something that wants to know when each query ends (e.g. the metrics
/// summary). Plugins add observers with [`Services::add_query_observer`].
pub trait QueryObserver: Send + Sync + fmt::Debug {
    /// Called once per query, before its root span closes.
    fn on_query_end(&self, end: &QueryEnd<'_>);

    /// Whether [`QueryEnd::operators`] should be filled for this observer
    /// (the figures are then computed even when no operator span is built).
    fn wants_operators(&self) -> bool {
        false
    }
}

/// Figures of a plugin's own that go on each operator's span (the memory
/// pool's peaks, say), asked for when the operator spans are built at the
/// query's end. Plugins add one with [`Services::add_operator_attributes`].
pub trait OperatorAttributes: Send + Sync + fmt::Debug {
    /// Pushes `(key, value)` figures for `operator` of the query whose
    /// root span is `query`.
    fn operator_attributes(
        &self,
        query: &tracing::Span,
        operator: crate::OperatorKey,
        out: &mut Vec<(&'static str, i64)>,
    );
}

/// What plugins added of one kind (`dyn QueryObserver`,
/// `dyn OperatorAttributes`), in plugin order: one services value per kind.
#[derive(Debug)]
struct Added<T: ?Sized>(Vec<Arc<T>>);

impl Services {
    /// Adds an observer called at the end of every root query span.
    pub fn add_query_observer(&mut self, observer: Arc<dyn QueryObserver>) {
        self.add(observer);
    }

    /// The observers plugins added, in plugin order.
    pub fn query_observers(&self) -> Vec<Arc<dyn QueryObserver>> {
        self.added()
    }

    /// Adds a source of figures for every operator span.
    pub fn add_operator_attributes(&mut self, source: Arc<dyn OperatorAttributes>) {
        self.add(source);
    }

    /// The sources of operator figures plugins added, in plugin order.
    pub fn operator_attributes(&self) -> Vec<Arc<dyn OperatorAttributes>> {
        self.added()
    }

    /// Appends `item` to what plugins added of its kind.
    fn add<T: ?Sized + Send + Sync + 'static>(&mut self, item: Arc<T>) {
        let mut items = self.added::<T>();
        items.push(item);
        self.insert(Arc::new(Added(items)));
    }

    /// What plugins added of kind `T`, in plugin order.
    fn added<T: ?Sized + Send + Sync + 'static>(&self) -> Vec<Arc<T>> {
        self.get::<Added<T>>()
            .map(|added| added.0.clone())
            .unwrap_or_default()
    }
}
