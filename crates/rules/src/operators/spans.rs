//! The query-end pass: one OpenTelemetry span per operator of each executed
//! plan, built from what the plan's own metrics and the wrappers' records
//! say, under the query's root span.

use super::lineage;
use super::record::{
    DeferredOptions, Description, Executed, NodeRecord, now_unix_ns, unix_ns_time,
};
use super::wrapper::DftraceExec;
use crate::MetricsLevel;
use crate::exec::{EXEC_TARGET, PREVIEW_FAILED};
use datafusion::common::stats::Precision;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{MetricType, MetricValue, MetricsSet, RatioMergeStrategy};
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, StatisticsArgs, StatisticsContext,
};
use dftrace_registry::keys;
use dftrace_registry::literals::QueryLiterals;
use dftrace_registry::{
    OperatorAttributes, OperatorFigures, RanOperator, RunningOperator, SpanLevel, Spread,
};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, Key, KeyValue, Value};
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::Duration;

/// How the query ended, for `rules.operator_spans_when`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) elapsed: Duration,
    pub(crate) failed: bool,
}

impl DeferredOptions {
    fn wants(&self, outcome: Outcome) -> bool {
        match self.when {
            crate::OperatorSpansWhen::Always => true,
            crate::OperatorSpansWhen::Slow => outcome.failed || outcome.elapsed >= self.slow,
            crate::OperatorSpansWhen::Failed => outcome.failed,
        }
    }
}

/// Whether the subscriber lets operator spans at `level` through (the
/// spans built here bypass `tracing`, so its filter is asked directly).
fn level_enabled(level: SpanLevel) -> bool {
    match level {
        SpanLevel::Trace => tracing::enabled!(target: EXEC_TARGET, tracing::Level::TRACE),
        SpanLevel::Debug => tracing::enabled!(target: EXEC_TARGET, tracing::Level::DEBUG),
        SpanLevel::Info => tracing::enabled!(target: EXEC_TARGET, tracing::Level::INFO),
        SpanLevel::Warn => tracing::enabled!(target: EXEC_TARGET, tracing::Level::WARN),
        SpanLevel::Error => tracing::enabled!(target: EXEC_TARGET, tracing::Level::ERROR),
    }
}

/// Builds one span per operator in `executed` (the operators that ran for
/// one query) under the root whose OpenTelemetry context is `root`, through
/// the global tracer provider (the one `dftrace-bootstrap` installs). The
/// operators are linked as in the plans they ran in; each tree of them is
/// built when `rules.operator_spans_when` wants its query. With `collect`,
/// returns every operator's figures (the spans' values, typed), whether or
/// not its span was built.
pub(crate) fn build_operator_spans(
    root: &Context,
    tracer: Option<Arc<BoxedTracer>>,
    executed: Vec<Executed>,
    outcome: Outcome,
    collect: bool,
    literals: &QueryLiterals,
    extra: Option<(&tracing::Span, &[Arc<dyn OperatorAttributes>])>,
) -> BuiltOperators {
    let mut built = BuiltOperators::default();
    let sampled = root.span().span_context().is_sampled();
    if executed.is_empty() || !(sampled || collect) {
        return built;
    }
    let forest = Forest::new(executed);
    let mut tracer = tracer;
    // Figures number the operators across the query's plans; each plan's
    // spans number theirs from 0 (`dftrace.operator.index`).
    let mut figure_offset = 0;
    for &top in &forest.roots {
        let Some(options) = forest.nodes[top].record.deferred() else {
            continue;
        };
        let build = sampled && options.wants(outcome) && level_enabled(options.level);
        if !build && !collect {
            continue;
        }
        // The subscriber's own tracer (dftrace-bootstrap's layers put it in
        // the root span), else the global provider's.
        let tracer = tracer.get_or_insert_with(|| {
            Arc::new(
                opentelemetry::global::tracer_provider()
                    .tracer_with_scope(InstrumentationScope::builder(keys::SCOPE_NAME).build()),
            )
        });
        let now = now_unix_ns();
        // Previews mask a column by the names it takes above, too.
        let names_above = if build && options.preview.is_some() {
            lineage::NamesAbove::of(&forest.nodes[top].inner)
        } else {
            lineage::NamesAbove::default()
        };
        let mut pass = Pass {
            tracer,
            options,
            literals,
            extra,
            forest: &forest,
            names_above: &names_above,
            statistics: StatisticsContext::new(),
            next_index: 0,
            figure_offset,
            now,
            build,
            figures: collect.then_some(&mut built.figures),
            ran: &mut built.ran,
        };
        pass.operator(
            top,
            root,
            None,
            Window {
                start: now,
                end: now,
            },
        );
        figure_offset += pass.next_index;
    }
    built
}

/// The operators that have run so far, numbered as [`build_operator_spans`]
/// numbers their figures (`dftrace.operators`), with what each has done.
pub(crate) fn running_operators(executed: Vec<Executed>) -> Vec<RunningOperator> {
    fn visit(forest: &Forest, index: usize, parent: Option<u64>, out: &mut Vec<RunningOperator>) {
        let Executed { inner, record } = &forest.nodes[index];
        let id = out.len() as u64;
        let (rows, batches, partitions_started, partitions_done) = record.progress();
        out.push(RunningOperator {
            id,
            parent,
            name: inner.name().to_owned(),
            rows,
            batches,
            partitions_started,
            partitions_done,
            partitions: inner.properties().partitioning.partition_count() as u64,
        });
        for &child in &forest.children[index] {
            visit(forest, child, Some(id), out);
        }
    }
    let forest = Forest::new(executed);
    let mut out = Vec::new();
    for &top in &forest.roots {
        // Live operator spans have no figures: none here either.
        if forest.nodes[top].record.deferred().is_some() {
            visit(&forest, top, None, &mut out);
        }
    }
    out
}

/// What [`build_operator_spans`] made besides the spans.
#[derive(Debug, Default)]
pub(crate) struct BuiltOperators {
    /// The operators' figures, when asked for.
    pub(crate) figures: Vec<OperatorFigures>,
    /// Every operator the passes went through, with its span's id.
    pub(crate) ran: Vec<RanOperator>,
}

/// The operators that ran, linked as in their plans: a node's children are
/// the operators that ran below it.
struct Forest {
    nodes: Vec<Executed>,
    children: Vec<Vec<usize>>,
    roots: Vec<usize>,
}

impl Forest {
    fn new(nodes: Vec<Executed>) -> Self {
        // By record: a node rebuilt for another run (a recursive query's
        // iteration) shares its record with the node its parent names.
        let by_record: HashMap<*const NodeRecord, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (Arc::as_ptr(&node.record), i))
            .collect();
        let mut children = vec![Vec::new(); nodes.len()];
        let mut has_parent = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            for child in DftraceExec::child_records(&node.inner) {
                if let Some(&c) = by_record.get(&Arc::as_ptr(&child))
                    && c != i
                    && !has_parent[c]
                {
                    has_parent[c] = true;
                    children[i].push(c);
                }
            }
        }
        let roots = (0..nodes.len()).filter(|&i| !has_parent[i]).collect();
        Forest {
            nodes,
            children,
            roots,
        }
    }
}

/// A parent's interval: where a child that never ran is placed.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
}

struct Pass<'a> {
    tracer: &'a BoxedTracer,
    options: &'a DeferredOptions,
    /// Every text a span shows is masked with these.
    literals: &'a QueryLiterals,
    /// The plugins' own operator figures, and the root they read them by.
    extra: Option<(&'a tracing::Span, &'a [Arc<dyn OperatorAttributes>])>,
    forest: &'a Forest,
    names_above: &'a lineage::NamesAbove,
    statistics: StatisticsContext,
    next_index: i64,
    /// Added to a plan's positions to number the query's figures.
    figure_offset: i64,
    now: u64,
    /// Spans are built (else only figures are collected).
    build: bool,
    figures: Option<&'a mut Vec<OperatorFigures>>,
    ran: &'a mut Vec<RanOperator>,
}

impl Pass<'_> {
    /// The span of node `index` under `parent` (operator `parent_id`), then
    /// its children under it.
    fn operator(
        &mut self,
        index: usize,
        parent: &Context,
        parent_id: Option<i64>,
        parent_window: Window,
    ) {
        let Executed { inner, record } = &self.forest.nodes[index];
        let window = window(record, parent_window, self.now);
        let position = self.next_index;
        self.next_index += 1;
        let ran = self.ran.len();
        self.ran.push(RanOperator {
            key: record.key(),
            index: u64::try_from(position).unwrap_or(0),
            name: inner.name().to_owned(),
            span_id: None,
        });

        let description = self.description(inner, record);
        let mut attributes = vec![
            KeyValue::new(keys::TARGET, EXEC_TARGET),
            KeyValue::new(keys::OPERATOR_INDEX, position),
            KeyValue::new(keys::NODE, Value::String(description.node.into())),
            KeyValue::new(
                keys::PARTITIONING,
                Value::String(description.partitioning.into()),
            ),
            KeyValue::new(
                keys::OPERATOR_PARTITIONS,
                i64::try_from(inner.output_partitioning().partition_count()).unwrap_or(i64::MAX),
            ),
        ];
        // Plan properties that rarely change a reading: with the developer
        // level of detail only.
        if self.options.metrics_level == MetricsLevel::Dev {
            attributes.push(KeyValue::new(
                keys::EMISSION_TYPE,
                emission_type(inner.properties().emission_type),
            ));
            attributes.push(KeyValue::new(
                keys::BOUNDEDNESS,
                boundedness(inner.properties().boundedness),
            ));
        }
        if self.options.record_metrics
            && let Some(metrics) = inner.metrics()
        {
            metric_attributes(&metrics, self.options.metrics_level, &mut attributes);
        }
        if self.options.estimated_rows
            && let Ok(statistics) = self
                .statistics
                .compute(inner.as_ref(), &StatisticsArgs::new())
        {
            let estimate = match statistics.num_rows {
                Precision::Exact(rows) => Some((rows, true)),
                Precision::Inexact(rows) => Some((rows, false)),
                Precision::Absent => None,
            };
            if let Some((rows, exact)) = estimate {
                attributes.push(KeyValue::new(keys::ESTIMATED_ROWS, int(rows as u64)));
                attributes.push(KeyValue::new(keys::ESTIMATED_ROWS_EXACT, exact));
            }
        }
        if let Some((query, sources)) = self.extra {
            let mut figures = Vec::new();
            for source in sources {
                source.operator_attributes(query, record.key(), &mut figures);
            }
            attributes.extend(
                figures
                    .into_iter()
                    .map(|(key, value)| KeyValue::new(key, value)),
            );
        }
        let failed = failed_here(record, inner);
        if let Some(figures) = self.figures.as_deref_mut() {
            figures.push(operator_figures(
                inner,
                self.figure_offset + position,
                parent_id.map(|parent| self.figure_offset + parent),
                window,
                failed.is_some(),
                &attributes,
            ));
        }
        if !self.build {
            for &child in &self.forest.children[index] {
                self.operator(child, parent, Some(position), window);
            }
            return;
        }
        self.preview(inner, record, &mut attributes);
        for (key, value) in &self.options.custom_fields {
            attributes.push(KeyValue::new(key.clone(), value.clone()));
        }

        let mut span = self
            .tracer
            .span_builder(inner.name().to_owned())
            .with_kind(SpanKind::Internal)
            .with_start_time(unix_ns_time(window.start))
            .with_attributes(attributes)
            .start_with_context(self.tracer, parent);
        self.ran[ran].span_id = Some(span.span_context().span_id().to_bytes());
        if let Some(error) = failed {
            span.set_status(Status::error(self.literals.mask_error(error.to_owned())));
        }
        let context = parent.with_span(span);
        for &child in &self.forest.children[index] {
            self.operator(child, &context, Some(position), window);
        }
        context.span().end_with_timestamp(unix_ns_time(window.end));
    }

    /// The node's description, as taken before it ran (described now,
    /// masked, only for a node no description was taken for).
    fn description(&self, inner: &Arc<dyn ExecutionPlan>, record: &NodeRecord) -> Description {
        if record.description().is_none() {
            record.describe(inner.as_ref(), self.literals);
        }
        record.description().cloned().unwrap_or(Description {
            node: Arc::from(""),
            partitioning: Arc::from(""),
        })
    }

    fn preview(
        &self,
        inner: &Arc<dyn ExecutionPlan>,
        record: &NodeRecord,
        attributes: &mut Vec<KeyValue>,
    ) {
        let Some(formatter) = &self.options.preview else {
            return;
        };
        let rows = record.preview_rows();
        let count: usize = rows.iter().map(|batch| batch.num_rows()).sum();
        if count == 0 {
            return;
        }
        let Some(first) = rows.first() else { return };
        // Each column is masked by its name and by what it is computed from.
        let mut sources = lineage::output_sources(inner, self.options.record_literals);
        self.names_above.add_to(inner.as_ref(), &mut sources);
        let text = datafusion::arrow::compute::concat_batches(&first.schema(), &rows)
            .ok()
            .and_then(|batch| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    formatter(&batch, &sources)
                }))
                .ok()
                .and_then(Result::ok)
            })
            .unwrap_or_else(|| PREVIEW_FAILED.to_owned());
        // A value typed in the query (`VALUES ('ada')`, a constant column)
        // is query text as much as data.
        attributes.push(KeyValue::new(keys::PREVIEW, self.literals.masked(text)));
        attributes.push(KeyValue::new(keys::PREVIEW_ROWS, int(count as u64)));
    }
}

/// The operator's interval: first start to last end over its partitions. A
/// node that never ran sits at its parent's start, with no length; one still
/// running (a cancelled stream not yet dropped) ends now.
fn window(record: &NodeRecord, parent: Window, now: u64) -> Window {
    match record.first_start() {
        None => Window {
            start: parent.start,
            end: parent.start,
        },
        Some(start) => Window {
            start,
            end: record.last_end().unwrap_or(now).max(start),
        },
    }
}

/// The error `record` saw, when it started there: no wrapped child saw one
/// (the operators above only passed it on).
fn failed_here<'a>(record: &'a NodeRecord, inner: &Arc<dyn ExecutionPlan>) -> Option<&'a str> {
    let error = record.error()?;
    let from_child = DftraceExec::child_records(inner)
        .iter()
        .any(|child| child.error().is_some());
    (!from_child).then_some(error)
}

/// The figures of an operator's span, read back from its attributes so that
/// they are the exported values.
fn operator_figures(
    inner: &Arc<dyn ExecutionPlan>,
    id: i64,
    parent: Option<i64>,
    window: Window,
    failed: bool,
    attributes: &[KeyValue],
) -> OperatorFigures {
    let find = |key: &str| {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .and_then(|kv| match kv.value {
                Value::I64(v) => u64::try_from(v).ok(),
                _ => None,
            })
    };
    let spread = |[min, median, max]: [&str; 3]| {
        Some(Spread {
            min: find(min)?,
            median: find(median)?,
            max: find(max)?,
        })
    };
    let metrics = attributes
        .iter()
        .filter_map(|kv| {
            let name = kv.key.as_str().strip_prefix(keys::METRICS_PREFIX)?;
            match kv.value {
                Value::I64(v) => Some((name.to_owned(), v)),
                _ => None,
            }
        })
        .collect();
    let description = attributes
        .iter()
        .find(|kv| kv.key.as_str() == keys::NODE)
        .map(|kv| kv.value.as_str().into_owned())
        .unwrap_or_default();
    OperatorFigures {
        id: id as u64,
        parent: parent.map(|p| p as u64),
        name: inner.name().to_owned(),
        description,
        start_unix_ns: window.start,
        end_unix_ns: window.end,
        partitions: inner.output_partitioning().partition_count() as u64,
        self_time_ns: find(keys::SELF_TIME_NS),
        output_rows: find(&format!("{}output_rows", keys::METRICS_PREFIX)),
        estimated_rows: find(keys::ESTIMATED_ROWS),
        rows_spread: spread([keys::ROWS_MIN, keys::ROWS_MEDIAN, keys::ROWS_MAX]),
        self_time_spread: spread([
            keys::SELF_TIME_MIN,
            keys::SELF_TIME_MEDIAN,
            keys::SELF_TIME_MAX,
        ]),
        spilled_bytes: find(&format!("{}spilled_bytes", keys::METRICS_PREFIX)),
        peak_memory_bytes: find(keys::OPERATOR_PEAK_MEMORY),
        metrics,
        failed,
    }
}

/// DataFusion's name for `emission`, as its `Debug` writes it.
fn emission_type(emission: EmissionType) -> &'static str {
    match emission {
        EmissionType::Incremental => "Incremental",
        EmissionType::Final => "Final",
        EmissionType::Both => "Both",
    }
}

/// DataFusion's name for `boundedness`, as its `Debug` writes it.
fn boundedness(boundedness: Boundedness) -> &'static str {
    match boundedness {
        Boundedness::Bounded => "Bounded",
        Boundedness::Unbounded {
            requires_infinite_memory: false,
        } => "Unbounded { requires_infinite_memory: false }",
        Boundedness::Unbounded {
            requires_infinite_memory: true,
        } => "Unbounded { requires_infinite_memory: true }",
    }
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What a count or a time is measured in.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Count,
    Nanoseconds,
}

/// One metric's figures, summed over partitions.
#[derive(Debug)]
enum Figure {
    Int(Unit, u64),
    Pruning {
        pruned: u64,
        matched: u64,
        fully_matched: u64,
    },
    Ratio {
        part: u64,
        total: u64,
    },
    /// A host's `CustomMetricValue`: DataFusion gives no number for it, so
    /// its own text.
    Text(String),
}

/// Every metric `metrics` holds at `level`, whatever its name, summed over
/// partitions and typed by its kind (counts, bytes and gauges as Int; times
/// as Int nanoseconds in a `_ns` key; pruning and ratio figures as Int
/// pairs), plus the operator's own time and its per-partition spread.
fn metric_attributes<'m>(
    metrics: &'m MetricsSet,
    level: MetricsLevel,
    attributes: &mut Vec<KeyValue>,
) {
    let mut figures: BTreeMap<&'m str, Figure> = BTreeMap::new();
    let mut rows_by_partition: BTreeMap<usize, u64> = BTreeMap::new();
    let mut compute_by_partition: BTreeMap<usize, u64> = BTreeMap::new();
    let mut compute: Option<u64> = None;
    let add = |figures: &mut BTreeMap<&'m str, Figure>, name: &'m str, unit: Unit, value: usize| {
        let entry = figures.entry(name).or_insert(Figure::Int(unit, 0));
        if let Figure::Int(_, total) = entry {
            *total += value as u64;
        }
    };
    for metric in metrics.iter() {
        if level == MetricsLevel::Summary && metric.metric_type() != MetricType::Summary {
            continue;
        }
        let value = metric.value();
        let name = value.name();
        match value {
            MetricValue::OutputRows(count) => {
                if let Some(partition) = metric.partition() {
                    *rows_by_partition.entry(partition).or_default() += count.value() as u64;
                }
                add(&mut figures, name, Unit::Count, count.value());
            }
            MetricValue::SpillCount(count)
            | MetricValue::SpilledBytes(count)
            | MetricValue::OutputBytes(count)
            | MetricValue::OutputBatches(count)
            | MetricValue::SpilledRows(count)
            | MetricValue::Count { count, .. } => {
                add(&mut figures, name, Unit::Count, count.value());
            }
            MetricValue::CurrentMemoryUsage(gauge)
            | MetricValue::Gauge { gauge, .. }
            | MetricValue::PeakMemoryUsage { gauge, .. } => {
                add(&mut figures, name, Unit::Count, gauge.value());
            }
            MetricValue::ElapsedCompute(time) => {
                if let Some(partition) = metric.partition() {
                    *compute_by_partition.entry(partition).or_default() += time.value() as u64;
                }
                *compute.get_or_insert(0) += time.value() as u64;
                add(&mut figures, name, Unit::Nanoseconds, time.value());
            }
            MetricValue::Time { time, .. } => {
                add(&mut figures, name, Unit::Nanoseconds, time.value());
            }
            // The span's own start and end.
            MetricValue::StartTimestamp(_) | MetricValue::EndTimestamp(_) => {}
            MetricValue::PruningMetrics {
                pruning_metrics, ..
            } => {
                let entry = figures.entry(name).or_insert(Figure::Pruning {
                    pruned: 0,
                    matched: 0,
                    fully_matched: 0,
                });
                if let Figure::Pruning {
                    pruned,
                    matched,
                    fully_matched,
                } = entry
                {
                    *pruned += pruning_metrics.pruned() as u64;
                    *matched += pruning_metrics.matched() as u64;
                    *fully_matched += pruning_metrics.fully_matched() as u64;
                }
            }
            MetricValue::Ratio { ratio_metrics, .. } => {
                let entry = figures
                    .entry(name)
                    .or_insert(Figure::Ratio { part: 0, total: 0 });
                if let Figure::Ratio { part, total } = entry {
                    // Merged as DataFusion merges them (EXPLAIN ANALYZE's
                    // figures): some ratios share one total over partitions.
                    let (new_part, new_total) =
                        (ratio_metrics.part() as u64, ratio_metrics.total() as u64);
                    match ratio_metrics.merge_strategy() {
                        RatioMergeStrategy::AddPartAddTotal => {
                            *part += new_part;
                            *total += new_total;
                        }
                        RatioMergeStrategy::AddPartSetTotal => {
                            *part += new_part;
                            *total = new_total;
                        }
                        RatioMergeStrategy::SetPartAddTotal => {
                            *part = new_part;
                            *total += new_total;
                        }
                    }
                }
            }
            MetricValue::Custom { .. } => {
                figures.insert(name, Figure::Text(value.to_string()));
            }
        }
    }
    for (name, figure) in figures {
        match figure {
            Figure::Int(Unit::Count, total) => {
                attributes.push(KeyValue::new(metric_key(name, Suffix::None), int(total)));
            }
            Figure::Int(Unit::Nanoseconds, total) => {
                attributes.push(KeyValue::new(
                    metric_key(name, Suffix::Nanoseconds),
                    int(total),
                ));
            }
            Figure::Pruning {
                pruned,
                matched,
                fully_matched,
            } => {
                attributes.push(KeyValue::new(metric_key(name, Suffix::Pruned), int(pruned)));
                attributes.push(KeyValue::new(
                    metric_key(name, Suffix::Matched),
                    int(matched),
                ));
                attributes.push(KeyValue::new(
                    metric_key(name, Suffix::FullyMatched),
                    int(fully_matched),
                ));
            }
            Figure::Ratio { part, total } => {
                attributes.push(KeyValue::new(metric_key(name, Suffix::Part), int(part)));
                attributes.push(KeyValue::new(metric_key(name, Suffix::Total), int(total)));
            }
            Figure::Text(text) => {
                attributes.push(KeyValue::new(
                    metric_key(name, Suffix::None),
                    Value::from(text),
                ));
            }
        }
    }
    if let Some(compute) = compute {
        attributes.push(KeyValue::new(keys::SELF_TIME_NS, int(compute)));
    }
    spread(
        &rows_by_partition,
        [keys::ROWS_MIN, keys::ROWS_MEDIAN, keys::ROWS_MAX],
        attributes,
    );
    spread(
        &compute_by_partition,
        [
            keys::SELF_TIME_MIN,
            keys::SELF_TIME_MEDIAN,
            keys::SELF_TIME_MAX,
        ],
        attributes,
    );
}

/// The suffixes a metric's keys can have.
#[derive(Debug, Clone, Copy)]
enum Suffix {
    None,
    Nanoseconds,
    Pruned,
    Matched,
    FullyMatched,
    Part,
    Total,
}

impl Suffix {
    const ALL: usize = 7;

    fn text(self) -> &'static str {
        match self {
            Suffix::None => "",
            Suffix::Nanoseconds => "_ns",
            Suffix::Pruned => ".pruned",
            Suffix::Matched => ".matched",
            Suffix::FullyMatched => ".fully_matched",
            Suffix::Part => ".part",
            Suffix::Total => ".total",
        }
    }
}

/// The attribute key of metric `name` with `suffix`, made once per thread:
/// metric names are few (DataFusion's and the host's), and the spans of
/// every query share the same keys instead of formatting them anew; per
/// thread, so no lock is shared between queries.
fn metric_key(name: &str, suffix: Suffix) -> Key {
    /// Per suffix: metric name → key.
    type Keys = [HashMap<Box<str>, Key, BuildHasherDefault<Fnv>>; Suffix::ALL];
    thread_local! {
        static KEYS: std::cell::RefCell<Keys> =
            std::cell::RefCell::new(std::array::from_fn(|_| HashMap::default()));
    }
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        let keys = &mut keys[suffix as usize];
        if let Some(key) = keys.get(name) {
            return key.clone();
        }
        let key = Key::from(Arc::<str>::from(format!(
            "{}{name}{}",
            keys::METRICS_PREFIX,
            suffix.text()
        )));
        keys.insert(name.into(), key.clone());
        key
    })
}

/// FNV-1a: metric names are short and trusted, so a simple hash beats the
/// default (SipHash) here.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// Minimum, median (the lower middle) and maximum of the per-partition
/// values, so skew shows (for two partitions or more).
fn spread(
    values: &BTreeMap<usize, u64>,
    [min, median, max]: [&'static str; 3],
    out: &mut Vec<KeyValue>,
) {
    // One partition's figure is the operator's total: no spread to show.
    if values.len() < 2 {
        return;
    }
    let mut sorted: Vec<u64> = values.values().copied().collect();
    sorted.sort_unstable();
    out.push(KeyValue::new(min, int(sorted[0])));
    out.push(KeyValue::new(median, int(sorted[(sorted.len() - 1) / 2])));
    out.push(KeyValue::new(max, int(sorted[sorted.len() - 1])));
}
