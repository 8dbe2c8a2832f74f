//! The query-end pass: one OpenTelemetry span per operator of each executed
//! plan, built from what the plan's own metrics and the wrappers' records
//! say, under the query's root span.

use super::lineage;
use super::metric_attributes::metric_attributes;
use super::record::{DeferredOptions, Description, Executed, NodeRecord};
use super::wrapper::DftraceExec;
use crate::config::MetricsLevel;
use crate::preview::PREVIEW_FAILED;
use crate::span_helpers::{now_unix_ns, unix_ns_time};
use datafusion::common::stats::Precision;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{MetricValue, MetricsSet, Timestamp};
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, StatisticsArgs, StatisticsContext,
};
use dftrace_registry::keys;
use dftrace_registry::keys::EXEC_TARGET;
use dftrace_registry::literals::QueryLiterals;
use dftrace_registry::saturating_i64;
use dftrace_registry::{
    OperatorAttributes, OperatorFigures, RanOperator, RunningOperator, SpanLevel, Spread,
};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, Value};
use std::collections::HashMap;
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
            crate::config::OperatorSpansWhen::Always => true,
            crate::config::OperatorSpansWhen::Slow => {
                outcome.failed || outcome.elapsed >= self.slow
            }
            crate::config::OperatorSpansWhen::Failed => outcome.failed,
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
        // A node no wrapper sits around (`metrics-only`) is found as its
        // parent names it.
        let by_node: HashMap<*const (), usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.record.is_unwrapped())
            .map(|(i, node)| (Arc::as_ptr(&node.inner).cast::<()>(), i))
            .collect();
        let mut children = vec![Vec::new(); nodes.len()];
        let mut has_parent = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            let wrapped = DftraceExec::child_records(&node.inner)
                .into_iter()
                .filter_map(|child| by_record.get(&Arc::as_ptr(&child)).copied());
            // (`deferred` has none: its nodes' children are not asked for.)
            let named = if by_node.is_empty() {
                Vec::new()
            } else {
                node.inner.children()
            };
            let unwrapped = named
                .into_iter()
                .filter_map(|child| by_node.get(&Arc::as_ptr(child).cast::<()>()).copied());
            for c in wrapped.chain(unwrapped).collect::<Vec<_>>() {
                if c != i && !has_parent[c] {
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

/// A parent's interval: where a child that never ran is placed, and the
/// latest its children end.
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
        // Read when shown or when they give the interval.
        let metrics = (self.options.record_metrics || record.is_unwrapped())
            .then(|| dftrace_registry::node_metrics(inner.as_ref()))
            .flatten();
        let window = window(
            record,
            metrics.as_ref(),
            parent_id.is_some().then_some(parent_window),
            parent_window,
            self.now,
        );
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
                saturating_i64(inner.output_partitioning().partition_count()),
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
            && let Some(metrics) = &metrics
        {
            metric_attributes(metrics, self.options.metrics_level, &mut attributes);
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
                attributes.push(KeyValue::new(
                    keys::ESTIMATED_ROWS,
                    saturating_i64(rows as u64),
                ));
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
        attributes.push(KeyValue::new(
            keys::PREVIEW_ROWS,
            saturating_i64(count as u64),
        ));
    }
}

/// The operator's interval: first start to last end over its partitions. A
/// node that never ran sits at its parent's start, with no length; one still
/// running (a cancelled stream not yet dropped) ends now. A node no wrapper
/// watched (`metrics-only`) spans the start and end timestamps of its
/// metrics — from when its streams were made, at `execute` — or its
/// parent's interval where it records none; it starts with its parent at
/// the earliest (a node may make its streams just before its parent's).
/// Under an operator (`operator_parent`) every node ends with its parent at
/// the latest: a stream its parent stopped reading (a limit reached) may be
/// dropped after the query has ended. (A watched node may start before its
/// parent: a task its parent spawned at `execute` can poll it before the
/// parent is polled.)
fn window(
    record: &NodeRecord,
    metrics: Option<&MetricsSet>,
    operator_parent: Option<Window>,
    parent: Window,
    now: u64,
) -> Window {
    let own = own_window(record, metrics, parent, now);
    let Some(parent) = operator_parent else {
        return own;
    };
    let start = if record.is_unwrapped() {
        own.start.clamp(parent.start, parent.end.max(parent.start))
    } else {
        own.start
    };
    Window {
        start,
        end: own.end.min(parent.end).max(start),
    }
}

fn own_window(
    record: &NodeRecord,
    metrics: Option<&MetricsSet>,
    parent: Window,
    now: u64,
) -> Window {
    if record.is_unwrapped() {
        return metrics
            .and_then(|metrics| metrics_window(metrics, parent))
            .unwrap_or(parent);
    }
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

/// The earliest start and latest end timestamps over a node's partitions
/// (DataFusion's `BaselineMetrics` records both); a node started but not
/// ended ends with its parent.
fn metrics_window(metrics: &MetricsSet, parent: Window) -> Option<Window> {
    let unix_ns = |timestamp: &Timestamp| {
        timestamp
            .value()
            .and_then(|time| time.timestamp_nanos_opt())
            .and_then(|ns| u64::try_from(ns).ok())
    };
    let mut start: Option<u64> = None;
    let mut end: Option<u64> = None;
    for metric in metrics.iter() {
        match metric.value() {
            MetricValue::StartTimestamp(timestamp) => {
                if let Some(ns) = unix_ns(timestamp) {
                    start = Some(start.map_or(ns, |start| start.min(ns)));
                }
            }
            MetricValue::EndTimestamp(timestamp) => {
                if let Some(ns) = unix_ns(timestamp) {
                    end = Some(end.map_or(ns, |end| end.max(ns)));
                }
            }
            _ => {}
        }
    }
    let start = start?;
    Some(Window {
        start,
        end: end.unwrap_or(parent.end).max(start),
    })
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
