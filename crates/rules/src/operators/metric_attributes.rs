//! DataFusion's metrics as typed span attributes: every metric of an
//! operator, whatever its name, summed over partitions and typed by its kind
//! (counts, bytes and gauges as Int; times as Int nanoseconds in a `_ns`
//! key; pruning and ratio figures as Int pairs; a host's custom metric as
//! its text), with the operator's own time and its spread over partitions.

use crate::config::MetricsLevel;
use datafusion::physical_plan::metrics::{MetricType, MetricValue, MetricsSet, RatioMergeStrategy};
use dftrace_registry::keys;
use dftrace_registry::saturating_i64;
use opentelemetry::{Key, KeyValue, Value};
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

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
pub(super) fn metric_attributes<'m>(
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
                attributes.push(int_attribute(name, Suffix::None, total));
            }
            Figure::Int(Unit::Nanoseconds, total) => {
                attributes.push(int_attribute(name, Suffix::Nanoseconds, total));
            }
            Figure::Pruning {
                pruned,
                matched,
                fully_matched,
            } => {
                attributes.extend([
                    int_attribute(name, Suffix::Pruned, pruned),
                    int_attribute(name, Suffix::Matched, matched),
                    int_attribute(name, Suffix::FullyMatched, fully_matched),
                ]);
            }
            Figure::Ratio { part, total } => {
                attributes.extend([
                    int_attribute(name, Suffix::Part, part),
                    int_attribute(name, Suffix::Total, total),
                ]);
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
        attributes.push(KeyValue::new(keys::SELF_TIME_NS, saturating_i64(compute)));
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

/// The attribute of metric `name` with `suffix`: `value`, saturating at
/// `i64::MAX`.
fn int_attribute(name: &str, suffix: Suffix, value: u64) -> KeyValue {
    KeyValue::new(metric_key(name, suffix), saturating_i64(value))
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
pub(super) fn spread(
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
    out.push(KeyValue::new(min, saturating_i64(sorted[0])));
    out.push(KeyValue::new(
        median,
        saturating_i64(sorted[(sorted.len() - 1) / 2]),
    ));
    out.push(KeyValue::new(max, saturating_i64(sorted[sorted.len() - 1])));
}
