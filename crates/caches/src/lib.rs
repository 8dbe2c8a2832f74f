//! `dftrace-caches`: DataFusion's caches observed per query.
//!
//! With `caches.enabled` (every preset), the `caches` plugin rebuilds the
//! session's runtime environment with each cache of its `CacheManager`
//! (file metadata, file statistics and list files, the ones configured)
//! wrapped in an observing cache, which passes every `Cache` method through
//! and counts each `get` as a hit (an entry was found; DataFusion may still
//! find it stale for a changed file) or a miss, for the query whose root
//! span encloses the call (planning and execution alike), kept in the root
//! span's extensions as the storage counters are.
//!
//! At each query's end its root span gets, per cache,
//! `dftrace.cache.<cache>.hits`, `.misses`, `.entries` and `.bytes` (what
//! the cache holds then; Int attributes), and the OpenTelemetry counters
//! `cache.hits` and `cache.misses` (attribute `cache.name`) add the query's
//! figures. `<cache>` is `file_metadata`, `file_statistics` or `list_files`.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use datafusion::common::HashMap;
use datafusion::common::TableReference;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::cache::{Cache, CacheEntryInfo, CacheKey, CacheValue};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use dftrace_registry::saturating_i64;
use dftrace_registry::{Plugin, PluginContext, Preset, QueryEnd, QueryObserver, Section, Stage};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Cache observability settings: the `[caches]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachesConfig {
    /// Wrap the session's caches and record their hits and misses per
    /// query. On in every preset.
    pub enabled: bool,
    /// Record the OpenTelemetry counters `cache.hits` and `cache.misses`.
    pub otel_metrics: bool,
}

impl Section for CachesConfig {
    const NAME: &'static str = "caches";

    fn for_preset(_preset: Preset) -> Self {
        CachesConfig {
            enabled: true,
            otel_metrics: true,
        }
    }
}

/// The cache of file metadata (parquet footers).
pub const FILE_METADATA: &str = "file_metadata";
/// The cache of file statistics.
pub const FILE_STATISTICS: &str = "file_statistics";
/// The cache of directory listings.
pub const LIST_FILES: &str = "list_files";
/// Prefix of the root span's cache attributes.
pub const ATTRIBUTE_PREFIX: &str = "dftrace.cache.";
/// The OpenTelemetry counter of hits.
pub const HITS_METRIC: &str = "cache.hits";
/// The OpenTelemetry counter of misses.
pub const MISSES_METRIC: &str = "cache.misses";
/// The metric attribute naming the cache.
pub const CACHE_NAME: &str = "cache.name";

/// One query's hits and misses of one cache.
#[derive(Debug, Default)]
struct Counts {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// One query's counts, by cache.
#[derive(Debug, Default)]
struct QueryCaches {
    by_cache: Mutex<BTreeMap<&'static str, Arc<Counts>>>,
}

/// The counts of cache `label` for the query enclosing the current span.
fn current_counts(label: &'static str) -> Option<Arc<Counts>> {
    let caches = dftrace_registry::current_query_state::<QueryCaches>()?;
    let mut by_cache = caches
        .by_cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Some(Arc::clone(by_cache.entry(label).or_default()))
}

/// A query's hits and misses of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheCounts {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
}

/// The counts recorded for the query whose root span is `query_span`, by
/// cache (`file_metadata`, ...); caches the query did not use are absent.
pub fn query_cache_counts(query_span: &tracing::Span) -> BTreeMap<&'static str, CacheCounts> {
    let Some(caches) = dftrace_registry::query_state::<QueryCaches>(query_span) else {
        return BTreeMap::new();
    };
    let by_cache = caches
        .by_cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    by_cache
        .iter()
        .map(|(label, counts)| {
            (
                *label,
                CacheCounts {
                    hits: counts.hits.load(Ordering::Relaxed),
                    misses: counts.misses.load(Ordering::Relaxed),
                },
            )
        })
        .collect()
}

/// A cache whose lookups are counted per query; everything else passes
/// through to the cache it wraps.
pub(crate) struct ObservedCache<K: CacheKey, V: CacheValue> {
    inner: Arc<dyn Cache<K, V>>,
    label: &'static str,
    /// Bumped by every change a caller makes, so what the cache holds is
    /// measured again only after one.
    changes: Arc<AtomicU64>,
}

impl<K: CacheKey, V: CacheValue> std::fmt::Debug for ObservedCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedCache")
            .field("label", &self.label)
            .field("inner", &self.inner.name())
            .finish()
    }
}

impl<K: CacheKey, V: CacheValue> ObservedCache<K, V> {
    /// `inner`, counted under `label`.
    pub(crate) fn new(inner: Arc<dyn Cache<K, V>>, label: &'static str) -> Self {
        ObservedCache {
            inner,
            label,
            changes: Arc::default(),
        }
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }
}

#[deny(clippy::missing_trait_methods)]
impl<K: CacheKey, V: CacheValue> Cache<K, V> for ObservedCache<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        let value = self.inner.get(key);
        if let Some(counts) = current_counts(self.label) {
            let counter = if value.is_some() {
                &counts.hits
            } else {
                &counts.misses
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        value
    }

    fn put(&self, key: &K, value: V) -> Option<V> {
        self.changed();
        self.inner.put(key, value)
    }

    fn remove(&self, k: &K) -> Option<V> {
        self.changed();
        self.inner.remove(k)
    }

    fn contains_key(&self, k: &K) -> bool {
        self.inner.contains_key(k)
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    fn clear(&self) {
        self.changed();
        self.inner.clear();
    }

    fn name(&self) -> String {
        self.inner.name()
    }

    fn cache_limit(&self) -> usize {
        self.inner.cache_limit()
    }

    fn update_cache_limit(&self, limit: usize) {
        self.changed();
        self.inner.update_cache_limit(limit);
    }

    fn cache_ttl(&self) -> Option<Duration> {
        self.inner.cache_ttl()
    }

    fn update_cache_ttl(&self, ttl: Option<Duration>) {
        self.inner.update_cache_ttl(ttl);
    }

    fn drop_table_entries(&self, table_ref: &TableReference) -> datafusion::common::Result<()> {
        self.changed();
        self.inner.drop_table_entries(table_ref)
    }

    fn list_entries(&self) -> HashMap<K, CacheEntryInfo<V>> {
        self.inner.list_entries()
    }
}

/// What each cache holds: entries and bytes.
type Holdings = Arc<dyn Fn() -> Vec<(&'static str, usize, usize)> + Send + Sync>;

/// What one observed cache holds, measured again only when it changed:
/// summing the entries' sizes walks every entry (a parquet footer's
/// metadata, for the metadata cache), far too much to pay per query.
struct Holding<K: CacheKey, V: CacheValue> {
    label: &'static str,
    cache: Arc<dyn Cache<K, V>>,
    changes: Arc<AtomicU64>,
    /// (changes, entries, bytes) when last measured.
    measured: Mutex<Option<(u64, usize, usize)>>,
}

impl<K: CacheKey + 'static, V: CacheValue + 'static> Holding<K, V> {
    fn of(cache: &Arc<ObservedCache<K, V>>) -> Self {
        Holding {
            label: cache.label,
            cache: Arc::clone(cache) as Arc<dyn Cache<K, V>>,
            changes: Arc::clone(&cache.changes),
            measured: Mutex::new(None),
        }
    }

    /// The label, the entries and the bytes the cache holds.
    fn now(&self) -> (&'static str, usize, usize) {
        let changes = self.changes.load(Ordering::Relaxed);
        // Entries also go by themselves (an eviction, a TTL): a change of
        // count is a change too.
        let entries = self.cache.len();
        let mut measured = self
            .measured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *measured {
            Some((at, count, bytes)) if at == changes && count == entries => {
                (self.label, entries, bytes)
            }
            _ => {
                let bytes = self
                    .cache
                    .list_entries()
                    .values()
                    .map(|entry| entry.size_bytes)
                    .sum();
                *measured = Some((changes, entries, bytes));
                (self.label, entries, bytes)
            }
        }
    }
}

/// `runtime` rebuilt with its caches observed. A runtime whose caches are
/// already observed (taken from another dftrace session) would count twice:
/// build each session's runtime from an unobserved one.
pub fn observe_caches(
    runtime: &RuntimeEnv,
) -> datafusion::error::Result<(Arc<RuntimeEnv>, Holdings)> {
    let caches = &runtime.cache_manager;
    let metadata = Arc::new(ObservedCache::new(
        caches.get_file_metadata_cache(),
        FILE_METADATA,
    ));
    let statistics = caches
        .get_file_statistic_cache()
        .map(|cache| Arc::new(ObservedCache::new(cache, FILE_STATISTICS)));
    let listing = caches
        .get_list_files_cache()
        .map(|cache| Arc::new(ObservedCache::new(cache, LIST_FILES)));
    let config = CacheManagerConfig::default()
        .with_file_metadata_cache(Some(Arc::clone(&metadata) as Arc<dyn Cache<_, _>>))
        .with_metadata_cache_limit(caches.get_metadata_cache_limit())
        .with_file_statistics_cache(
            statistics
                .clone()
                .map(|cache| cache as Arc<dyn Cache<_, _>>),
        )
        .with_file_statistics_cache_limit(caches.get_file_statistic_cache_limit())
        .with_list_files_cache(listing.clone().map(|cache| cache as Arc<dyn Cache<_, _>>))
        .with_list_files_cache_limit(caches.get_list_files_cache_limit())
        .with_list_files_cache_ttl(caches.get_list_files_cache_ttl());
    let rebuilt = RuntimeEnvBuilder::from_runtime_env(runtime)
        .with_cache_manager(config)
        .build_arc()?;
    let metadata = Holding::of(&metadata);
    let statistics = statistics.as_ref().map(Holding::of);
    let listing = listing.as_ref().map(Holding::of);
    let holdings: Holdings = Arc::new(move || {
        let mut out = vec![metadata.now()];
        out.extend(statistics.as_ref().map(Holding::now));
        out.extend(listing.as_ref().map(Holding::now));
        out
    });
    Ok((rebuilt, holdings))
}

struct CachesObserver {
    holdings: Holdings,
    otel_metrics: bool,
    counters: OnceLock<(Counter<u64>, Counter<u64>)>,
}

impl std::fmt::Debug for CachesObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachesObserver").finish_non_exhaustive()
    }
}

/// The root-span keys of `label`'s hits, misses, entries and bytes: one
/// string per wire name, never formatted per query.
fn attribute_keys(label: &'static str) -> [&'static str; 4] {
    match label {
        FILE_METADATA => [
            "dftrace.cache.file_metadata.hits",
            "dftrace.cache.file_metadata.misses",
            "dftrace.cache.file_metadata.entries",
            "dftrace.cache.file_metadata.bytes",
        ],
        FILE_STATISTICS => [
            "dftrace.cache.file_statistics.hits",
            "dftrace.cache.file_statistics.misses",
            "dftrace.cache.file_statistics.entries",
            "dftrace.cache.file_statistics.bytes",
        ],
        _ => [
            "dftrace.cache.list_files.hits",
            "dftrace.cache.list_files.misses",
            "dftrace.cache.list_files.entries",
            "dftrace.cache.list_files.bytes",
        ],
    }
}

impl QueryObserver for CachesObserver {
    fn on_query_end(&self, end: &QueryEnd<'_>) {
        let counts = query_cache_counts(end.span);
        if self.otel_metrics && !counts.is_empty() {
            let (hits, misses) = self.counters.get_or_init(|| {
                let meter = opentelemetry::global::meter(dftrace_registry::keys::SCOPE_NAME);
                (
                    meter
                        .u64_counter(HITS_METRIC)
                        .with_description("Cache lookups that found an entry, by cache")
                        .build(),
                    meter
                        .u64_counter(MISSES_METRIC)
                        .with_description("Cache lookups that found none, by cache")
                        .build(),
                )
            });
            for (label, figures) in &counts {
                let attributes = [KeyValue::new(CACHE_NAME, *label)];
                hits.add(figures.hits, &attributes);
                misses.add(figures.misses, &attributes);
            }
        }
        if end.unsampled {
            return;
        }
        for (label, entries, bytes) in (self.holdings)() {
            let figures = counts.get(label).copied().unwrap_or_default();
            let [hits, misses, entries_key, bytes_key] = attribute_keys(label);
            end.span.set_attribute(hits, saturating_i64(figures.hits));
            end.span
                .set_attribute(misses, saturating_i64(figures.misses));
            end.span
                .set_attribute(entries_key, saturating_i64(entries as u64));
            end.span
                .set_attribute(bytes_key, saturating_i64(bytes as u64));
        }
    }
}

fn on_builder(
    mut builder: SessionStateBuilder,
    context: &mut PluginContext<'_>,
) -> datafusion::error::Result<SessionStateBuilder> {
    let config: CachesConfig = context.section()?;
    if !config.enabled {
        return Ok(builder);
    }
    let runtime = dftrace_registry::builder_runtime_env(&mut builder);
    let (runtime, holdings) = observe_caches(&runtime)?;
    context
        .services()
        .add_query_observer(Arc::new(CachesObserver {
            holdings,
            otel_metrics: config.otel_metrics,
            counters: OnceLock::new(),
        }));
    Ok(builder.with_runtime_env(runtime))
}

dftrace_registry::inventory::submit! {
    // After the object store registry, which rebuilds the runtime too.
    Plugin::new::<CachesConfig>(Stage::Observation).on_builder(on_builder)
}
