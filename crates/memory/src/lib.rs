//! `dftrace-memory`: DataFusion's memory pool observed per query and per
//! operator.
//!
//! With `memory.enabled` (off in every preset: it is a choice of the host),
//! the `memory` plugin rebuilds the session's runtime environment with its
//! memory pool (the host's, or DataFusion's default) wrapped in an
//! [`ObservedPool`], which passes every `MemoryPool` method through
//! unchanged, so limits, spilling decisions and errors are exactly the
//! wrapped pool's. Each consumer is attributed when it registers: to the
//! query whose root span encloses the registration and to the operator
//! dftrace-rules marks current then (see [`pool`]'s docs for why).
//!
//! At each query's end:
//!
//! - its root span gets `dftrace.memory.peak_bytes` (the most the query held
//!   at once), `dftrace.memory.limit_bytes` and `dftrace.memory.peak_fraction`
//!   when the pool has a limit, and `dftrace.memory.failed_reservations`;
//! - each operator span that registered a consumer gets
//!   `dftrace.operator.peak_memory_bytes` (its partitions together),
//!   `dftrace.operator.peak_memory_bytes.partition_max` (one reservation)
//!   and `dftrace.operator.failed_reservations`;
//! - OpenTelemetry (`memory.otel_metrics`): the histogram
//!   `dftrace.query.memory.peak` and the counter
//!   `dftrace.memory.failed_reservations`, recorded once per query, and the
//!   observable gauges `dftrace.memory.pool.reserved` and
//!   `dftrace.memory.pool.limit`, read by the meter when it collects.
//!
//! Memory an operator allocates without a reservation (most small buffers,
//! the batches in flight between operators) is invisible to the pool, and
//! so to these figures.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod pool;

pub use pool::{ObservedPool, OperatorMemoryFigures};

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use dftrace_registry::keys;
use dftrace_registry::saturating_i64;
use dftrace_registry::{
    OperatorAttributes, OperatorKey, Plugin, PluginContext, Preset, QueryEnd, QueryMemory,
    QueryObserver, Section, Stage,
};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
use pool::QueryOperators;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Memory observability settings: the `[memory]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Wrap the session's memory pool and record what each query and each
    /// operator reserved. Off in every preset.
    pub enabled: bool,
    /// Record the OpenTelemetry instruments (`dftrace.query.memory.peak`,
    /// `dftrace.memory.failed_reservations`, the pool gauges).
    pub otel_metrics: bool,
}

impl Section for MemoryConfig {
    const NAME: &'static str = "memory";

    fn for_preset(_preset: Preset) -> Self {
        MemoryConfig {
            enabled: false,
            otel_metrics: true,
        }
    }
}

/// The histogram of each query's peak reservation, in bytes.
pub const PEAK_METRIC: &str = "dftrace.query.memory.peak";
/// The counter of reservations the pool refused.
pub const FAILED_METRIC: &str = "dftrace.memory.failed_reservations";
/// The gauge of what the pool has reserved now.
pub const RESERVED_METRIC: &str = "dftrace.memory.pool.reserved";
/// The gauge of the pool's limit (pools with one).
pub const LIMIT_METRIC: &str = "dftrace.memory.pool.limit";
/// The gauges' attribute naming the wrapped pool (`greedy`, `fair`, ...).
pub const POOL_NAME: &str = "dftrace.memory.pool.name";
/// The gauges' attribute telling pools of one kind apart: the order in
/// which the process's sessions first observed them, from 0.
pub const POOL_ID: &str = "dftrace.memory.pool.id";

/// The pool's limit in bytes, when it has one.
pub fn pool_limit(pool: &dyn MemoryPool) -> Option<usize> {
    match pool.memory_limit() {
        MemoryLimit::Finite(limit) => Some(limit),
        MemoryLimit::Infinite | MemoryLimit::Unknown => None,
    }
}

/// What the pool granted the query whose root span is `query_span`; `None`
/// when the query registered no consumer with an observed pool.
pub fn query_memory(query_span: &tracing::Span) -> Option<Arc<QueryMemory>> {
    dftrace_registry::query_state::<QueryMemory>(query_span)
}

/// The figures of one operator of the query whose root span is
/// `query_span`; `None` when the operator registered no consumer.
pub fn operator_memory(
    query_span: &tracing::Span,
    operator: OperatorKey,
) -> Option<OperatorMemoryFigures> {
    dftrace_registry::query_state::<QueryOperators>(query_span)?.figures(operator)
}

/// `runtime` rebuilt with its memory pool observed; a pool that already is
/// (the runtime of another dftrace session) is kept as it is, since
/// attribution goes by the query, not by the pool.
pub fn observe_memory(
    runtime: &Arc<RuntimeEnv>,
) -> datafusion::error::Result<(Arc<RuntimeEnv>, Arc<dyn MemoryPool>)> {
    let pool = &runtime.memory_pool;
    if pool.is::<ObservedPool>() {
        return Ok((Arc::clone(runtime), Arc::clone(pool)));
    }
    let observed: Arc<dyn MemoryPool> = Arc::new(ObservedPool::new(Arc::clone(pool)));
    let rebuilt = RuntimeEnvBuilder::from_runtime_env(runtime)
        .with_memory_pool(Arc::clone(&observed))
        .build_arc()?;
    Ok((rebuilt, observed))
}

/// A watched pool: its id (in the order pools were first watched) and the
/// pool, alive or not.
type Watched = (usize, Weak<dyn MemoryPool>);

/// Every observed pool alive, for the gauges; registered once each.
fn gauge_pools() -> &'static Mutex<(usize, Vec<Watched>)> {
    static POOLS: OnceLock<Mutex<(usize, Vec<Watched>)>> = OnceLock::new();
    POOLS.get_or_init(Mutex::default)
}

fn watch_pool(pool: &Arc<dyn MemoryPool>) {
    let mut guard = gauge_pools().lock().unwrap_or_else(PoisonError::into_inner);
    let (next, pools) = &mut *guard;
    pools.retain(|(_, known)| known.strong_count() > 0);
    if !pools
        .iter()
        .any(|(_, known)| std::ptr::addr_eq(known.as_ptr(), Arc::as_ptr(pool)))
    {
        pools.push((*next, Arc::downgrade(pool)));
        *next += 1;
    }
}

/// Calls `observe` with each live observed pool and its id.
fn each_pool(mut observe: impl FnMut(usize, &dyn MemoryPool)) {
    let pools: Vec<(usize, Arc<dyn MemoryPool>)> = gauge_pools()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .1
        .iter()
        .filter_map(|(id, pool)| Some((*id, pool.upgrade()?)))
        .collect();
    for (id, pool) in pools {
        observe(id, pool.as_ref());
    }
}

/// The instruments, built once the first query ends (by then the host's
/// meter provider is installed).
struct Instruments {
    peak: Histogram<u64>,
    failed: Counter<u64>,
    _reserved: ObservableGauge<u64>,
    _limit: ObservableGauge<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter(keys::SCOPE_NAME);
        Instruments {
            peak: meter
                .u64_histogram(PEAK_METRIC)
                .with_unit("By")
                .with_description("The most memory pool reservation each query held at once")
                .build(),
            failed: meter
                .u64_counter(FAILED_METRIC)
                .with_description(
                    "Memory reservations the pool refused a query (ResourcesExhausted to the \
                     operator that asked; a spilling operator spills and goes on)",
                )
                .build(),
            _reserved: pool_gauge(
                &meter,
                RESERVED_METRIC,
                "What the memory pool has reserved",
                |pool| Some(pool.reserved()),
            ),
            _limit: pool_gauge(
                &meter,
                LIMIT_METRIC,
                "The memory pool's limit (pools with one)",
                pool_limit,
            ),
        }
    })
}

/// A gauge of `bytes` of each live observed pool (a pool for which it is
/// `None` is left out), by pool name and id.
fn pool_gauge(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
    bytes: fn(&dyn MemoryPool) -> Option<usize>,
) -> ObservableGauge<u64> {
    meter
        .u64_observable_gauge(name)
        .with_unit("By")
        .with_description(description)
        .with_callback(move |observer| {
            each_pool(|id, pool| {
                if let Some(bytes) = bytes(pool) {
                    let attributes = [
                        KeyValue::new(POOL_NAME, pool.name().to_owned()),
                        KeyValue::new(POOL_ID, saturating_i64(id)),
                    ];
                    observer.observe(as_u64(bytes), &attributes);
                }
            });
        })
        .build()
}

fn as_u64(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Puts the query's figures on its root and into the instruments.
#[derive(Debug)]
struct MemoryObserver {
    otel_metrics: bool,
}

impl QueryObserver for MemoryObserver {
    fn on_query_end(&self, end: &QueryEnd<'_>) {
        let memory = query_memory(end.span);
        let (peak, failed) = memory.as_ref().map_or((0, 0), |memory| {
            (memory.peak_bytes(), memory.failed_reservations())
        });
        if self.otel_metrics {
            let instruments = instruments();
            instruments.peak.record(as_u64(peak), &[]);
            if failed > 0 {
                instruments.failed.add(failed, &[]);
            }
        }
        if end.unsampled {
            return;
        }
        end.span
            .set_attribute(keys::MEMORY_PEAK, saturating_i64(peak));
        end.span
            .set_attribute(keys::MEMORY_FAILED, saturating_i64(failed));
        // The limit of the pool the query reserved in (a session's pool can
        // be replaced: `SET datafusion.runtime.memory_limit`).
        if let Some(limit) = memory.as_ref().and_then(|memory| memory.limit()) {
            end.span
                .set_attribute(keys::MEMORY_LIMIT, saturating_i64(limit));
            if limit > 0 {
                end.span
                    .set_attribute(keys::MEMORY_PEAK_FRACTION, peak as f64 / limit as f64);
            }
        }
    }
}

/// Puts each operator's figures on its span.
#[derive(Debug)]
struct MemoryOperatorAttributes;

impl OperatorAttributes for MemoryOperatorAttributes {
    fn operator_attributes(
        &self,
        query: &tracing::Span,
        operator: OperatorKey,
        out: &mut Vec<(&'static str, i64)>,
    ) {
        let Some(figures) = operator_memory(query, operator) else {
            return;
        };
        out.push((
            keys::OPERATOR_PEAK_MEMORY,
            saturating_i64(figures.peak_bytes),
        ));
        out.push((
            keys::OPERATOR_PEAK_MEMORY_PARTITION,
            saturating_i64(figures.partition_peak_bytes),
        ));
        out.push((
            keys::OPERATOR_FAILED_RESERVATIONS,
            saturating_i64(figures.failed_reservations),
        ));
    }
}

fn on_builder(
    builder: SessionStateBuilder,
    context: &mut PluginContext<'_>,
) -> datafusion::error::Result<SessionStateBuilder> {
    let config: MemoryConfig = context.section()?;
    if !config.enabled {
        return Ok(builder);
    }
    let mut builder = builder;
    let runtime = dftrace_registry::builder_runtime_env(&mut builder);
    let (runtime, pool) = observe_memory(&runtime)?;
    if config.otel_metrics {
        watch_pool(&pool);
    }
    let services = context.services();
    services.add_operator_attributes(Arc::new(MemoryOperatorAttributes));
    services.add_query_observer(Arc::new(MemoryObserver {
        otel_metrics: config.otel_metrics,
    }));
    Ok(builder.with_runtime_env(runtime))
}

dftrace_registry::inventory::submit! {
    Plugin::new::<MemoryConfig>(Stage::Observation).on_builder(on_builder)
}
