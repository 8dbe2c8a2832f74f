//! The observing pool: every `MemoryPool` call goes to the wrapped pool
//! unchanged; what a reservation holds is also added to the query and the
//! operator that registered its consumer.
//!
//! Attribution is by registration, not by the call: a consumer belongs to
//! the query whose root span encloses its registration and to the operator
//! dftrace-rules marks current then (its `execute` or its stream's poll,
//! where DataFusion's operators register). A reservation is grown, shrunk
//! and dropped from anywhere (a spawned task, a stream's drop after its
//! query ended), so the call's own context could not say whose it is; the
//! consumer's id can.

use datafusion::common::HashMap;
use datafusion::error::Result;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use dftrace_registry::{OperatorKey, QueryMemory};
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

/// What one operator of one query held, over its partitions.
#[derive(Debug, Default)]
pub(crate) struct OperatorMemory {
    current: AtomicUsize,
    peak: AtomicUsize,
    /// The most one of its consumers (a partition's reservation) held.
    consumer_peak: AtomicUsize,
    failed: AtomicU64,
}

/// One operator's figures, read at the query's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperatorMemoryFigures {
    /// The most its partitions held at once, together.
    pub peak_bytes: usize,
    /// The most one of its reservations held.
    pub partition_peak_bytes: usize,
    /// Reservations the pool refused it.
    pub failed_reservations: u64,
}

impl OperatorMemory {
    fn figures(&self) -> OperatorMemoryFigures {
        OperatorMemoryFigures {
            peak_bytes: self.peak.load(Ordering::Relaxed),
            partition_peak_bytes: self.consumer_peak.load(Ordering::Relaxed),
            failed_reservations: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// One query's operators, in its root span's extensions.
#[derive(Debug, Default)]
pub(crate) struct QueryOperators {
    by_operator: Mutex<HashMap<OperatorKey, Arc<OperatorMemory>>>,
}

impl QueryOperators {
    fn operator(&self, key: OperatorKey) -> Arc<OperatorMemory> {
        let mut by_operator = self
            .by_operator
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(by_operator.entry(key).or_default())
    }

    /// The figures of `key`, if it registered a consumer.
    pub(crate) fn figures(&self, key: OperatorKey) -> Option<OperatorMemoryFigures> {
        let by_operator = self
            .by_operator
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_operator.get(&key).map(|memory| memory.figures())
    }
}

/// A registered consumer and whose it is.
#[derive(Debug)]
struct Consumer {
    held: AtomicUsize,
    query: Arc<QueryMemory>,
    operator: Option<Arc<OperatorMemory>>,
}

impl Consumer {
    fn grew(&self, bytes: usize) {
        let held = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.query.grow(bytes);
        if let Some(operator) = &self.operator {
            let now = operator.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
            operator.peak.fetch_max(now, Ordering::Relaxed);
            operator.consumer_peak.fetch_max(held, Ordering::Relaxed);
        }
    }

    fn shrank(&self, bytes: usize) {
        saturating_sub(&self.held, bytes);
        self.query.shrink(bytes);
        if let Some(operator) = &self.operator {
            saturating_sub(&operator.current, bytes);
        }
    }

    fn refused(&self) {
        self.query.refused();
        if let Some(operator) = &self.operator {
            operator.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Never below zero, whatever order concurrent partitions report in.
fn saturating_sub(value: &AtomicUsize, bytes: usize) {
    let _ = value.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
        Some(now.saturating_sub(bytes))
    });
}

/// Consumers by id, in shards so that concurrent registrations rarely meet
/// on one lock; a grow that misses the thread's last consumer (another
/// thread's, or two reservations grown in turn, as a join's build and
/// probe) takes a shard's read lock (an atomic, uncontended).
const SHARDS: usize = 16;

/// (pool address, consumer id) of the consumer this thread grew or shrank
/// last, held weakly so that an unregistered consumer's figures are freed.
type LastConsumer = ((usize, usize), Weak<Consumer>);

thread_local! {
    static LAST_CONSUMER: RefCell<LastConsumer> = const { RefCell::new(((0, usize::MAX), Weak::new())) };
}

/// A memory pool that observes: see the [module docs](self).
pub struct ObservedPool {
    inner: Arc<dyn MemoryPool>,
    consumers: [RwLock<HashMap<usize, Arc<Consumer>>>; SHARDS],
}

impl fmt::Debug for ObservedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservedPool")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Shows the wrapped pool, as DataFusion's messages would without dftrace.
impl fmt::Display for ObservedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl ObservedPool {
    /// `inner`, observed.
    pub fn new(inner: Arc<dyn MemoryPool>) -> Self {
        ObservedPool {
            inner,
            consumers: std::array::from_fn(|_| RwLock::default()),
        }
    }

    /// The pool it passes every call to.
    pub fn inner(&self) -> &Arc<dyn MemoryPool> {
        &self.inner
    }

    fn shard(&self, id: usize) -> &RwLock<HashMap<usize, Arc<Consumer>>> {
        &self.consumers[id % SHARDS]
    }

    /// Whose `reservation` is: the thread's last consumer when it is the
    /// same one (a partition's stream grows its own reservation batch after
    /// batch on one thread: a few atomic operations, no lock, no lookup),
    /// else the shard's map.
    fn consumer(&self, reservation: &MemoryReservation) -> Option<Arc<Consumer>> {
        let key = (
            std::ptr::from_ref(self) as usize,
            reservation.consumer().id(),
        );
        LAST_CONSUMER
            .try_with(|last| {
                let mut last = last.borrow_mut();
                // A dead entry (unregistered, never attributed, or another
                // pool's at a reused address) is asked of the map again.
                if last.0 == key
                    && let Some(consumer) = last.1.upgrade()
                {
                    return Some(consumer);
                }
                let found = self.lookup(key.1);
                *last = (key, found.as_ref().map(Arc::downgrade).unwrap_or_default());
                found
            })
            // The thread is exiting (its thread-locals are gone).
            .unwrap_or_else(|_| self.lookup(key.1))
    }

    fn lookup(&self, id: usize) -> Option<Arc<Consumer>> {
        let shard = self
            .shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(&id).cloned()
    }

    /// Consumers registered under a query and not yet unregistered.
    pub fn attributed_consumers(&self) -> usize {
        self.consumers
            .iter()
            .map(|shard| shard.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[deny(clippy::missing_trait_methods)]
impl MemoryPool for ObservedPool {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
        let Some(query) = dftrace_registry::current_query_state::<QueryMemory>() else {
            return;
        };
        query.set_limit(crate::pool_limit(self.inner.as_ref()));
        let operator = dftrace_registry::current_operator().and_then(|key| {
            dftrace_registry::current_query_state::<QueryOperators>()
                .map(|operators| operators.operator(key))
        });
        let entry = Arc::new(Consumer {
            held: AtomicUsize::new(0),
            query,
            operator,
        });
        self.shard(consumer.id())
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(consumer.id(), entry);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
        let removed = self
            .shard(consumer.id())
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&consumer.id());
        // A reservation frees what it holds before it unregisters; whatever
        // is left is no longer the query's either.
        if let Some(consumer) = removed {
            let left = consumer.held.load(Ordering::Relaxed);
            if left > 0 {
                consumer.shrank(left);
            }
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        if let Some(consumer) = self.consumer(reservation) {
            consumer.grew(additional);
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        if let Some(consumer) = self.consumer(reservation) {
            consumer.shrank(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let granted = self.inner.try_grow(reservation, additional);
        if let Some(consumer) = self.consumer(reservation) {
            match &granted {
                Ok(()) => consumer.grew(additional),
                Err(_) => consumer.refused(),
            }
        }
        granted
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::{
        FairSpillPool, GreedyMemoryPool, TrackConsumersPool, UnboundedMemoryPool,
    };
    use std::num::NonZeroUsize;

    /// One step of a sequence of pool calls, on reservation `.0`.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Grow(usize, usize),
        TryGrow(usize, usize),
        Shrink(usize, usize),
        Free(usize),
    }

    /// Runs `steps` on `pool` with three consumers (the first two can
    /// spill) and writes down what the caller sees after each.
    fn run(pool: Arc<dyn MemoryPool>, steps: &[Step]) -> Vec<String> {
        let reservations = [
            MemoryConsumer::new("sort")
                .with_can_spill(true)
                .register(&pool),
            MemoryConsumer::new("aggregate")
                .with_can_spill(true)
                .register(&pool),
            MemoryConsumer::new("join").register(&pool),
        ];
        let mut seen = vec![format!("{} {:?}", pool.name(), limit(&pool))];
        for step in steps {
            let outcome = match *step {
                Step::Grow(r, n) => {
                    reservations[r].grow(n);
                    "ok".to_owned()
                }
                Step::TryGrow(r, n) => match reservations[r].try_grow(n) {
                    Ok(()) => "ok".to_owned(),
                    Err(error) => comparable(&error.to_string()),
                },
                Step::Shrink(r, n) => {
                    let n = n.min(reservations[r].size());
                    reservations[r].shrink(n);
                    "ok".to_owned()
                }
                Step::Free(r) => reservations[r].free().to_string(),
            };
            let sizes: Vec<usize> = reservations.iter().map(MemoryReservation::size).collect();
            seen.push(format!(
                "{step:?} -> {outcome}; reserved {} {sizes:?}",
                pool.reserved()
            ));
        }
        drop(reservations);
        seen.push(format!("after drop: reserved {}", pool.reserved()));
        seen
    }

    /// An error without what differs between two runs of the same calls:
    /// consumer ids (`sort#19`) and the order of consumers that hold the
    /// same amount (the tracking pool's list breaks ties by hash order).
    fn comparable(message: &str) -> String {
        let mut without_ids = String::new();
        let mut chars = message.chars().peekable();
        while let Some(c) = chars.next() {
            without_ids.push(c);
            if c == '#' {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
            }
        }
        // The list's last consumer ends with `.`, the others with `,`.
        let mut lines: Vec<&str> = without_ids
            .lines()
            .map(|line| line.trim_end_matches([',', '.']))
            .collect();
        lines.sort_unstable();
        lines.join("\n")
    }

    fn limit(pool: &Arc<dyn MemoryPool>) -> Option<usize> {
        match pool.memory_limit() {
            MemoryLimit::Finite(limit) => Some(limit),
            MemoryLimit::Infinite | MemoryLimit::Unknown => None,
        }
    }

    fn steps() -> Vec<Step> {
        use Step::*;
        vec![
            TryGrow(0, 400),
            TryGrow(1, 500),
            TryGrow(2, 300),
            TryGrow(0, 600),
            Grow(2, 50),
            Shrink(0, 100),
            TryGrow(1, 200),
            TryGrow(2, 5_000),
            Free(1),
            TryGrow(0, 700),
            Shrink(2, 1_000),
            TryGrow(1, 900),
        ]
    }

    /// A fresh pool of one kind.
    type MakePool = fn() -> Arc<dyn MemoryPool>;

    fn pools() -> Vec<(&'static str, MakePool)> {
        vec![
            ("unbounded", || Arc::new(UnboundedMemoryPool::default())),
            ("greedy", || Arc::new(GreedyMemoryPool::new(1_500))),
            ("fair", || Arc::new(FairSpillPool::new(1_500))),
            ("tracking", || {
                Arc::new(TrackConsumersPool::new(
                    GreedyMemoryPool::new(1_000),
                    NonZeroUsize::new(3).expect("3 is not zero"),
                ))
            }),
        ]
    }

    #[test]
    fn every_call_behaves_as_the_wrapped_pool() {
        for (name, make) in pools() {
            let bare = run(make(), &steps());
            let observed = run(Arc::new(ObservedPool::new(make())), &steps());
            assert_eq!(observed, bare, "{name}: the observed pool differs");
            // The sequence exercised refusals, or the check says little.
            assert!(
                name == "unbounded" || bare.iter().any(|line| line.contains("Resources exhausted")),
                "{name}: no reservation was refused: {bare:#?}"
            );
        }
    }

    #[test]
    fn a_consumer_outside_any_query_is_not_attributed() {
        let pool: Arc<dyn MemoryPool> =
            Arc::new(ObservedPool::new(Arc::new(GreedyMemoryPool::new(100))));
        let reservation = MemoryConsumer::new("host").register(&pool);
        reservation.grow(10);
        let observed = pool
            .downcast_ref::<ObservedPool>()
            .expect("an observed pool");
        assert_eq!(observed.attributed_consumers(), 0);
        assert_eq!(pool.reserved(), 10);
    }

    /// The per-thread cache of the last consumer never hands one query's
    /// growth to another: two queries' reservations grown in turn on one
    /// thread, outside either query's span, each count for their own.
    #[test]
    fn grows_in_turn_on_one_thread_stay_with_their_query() {
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let pool: Arc<dyn MemoryPool> =
                Arc::new(ObservedPool::new(Arc::new(UnboundedMemoryPool::default())));
            let first = tracing::info_span!("dftrace.query");
            let second = tracing::info_span!("dftrace.query");
            let a = first.in_scope(|| MemoryConsumer::new("a").register(&pool));
            let b = second.in_scope(|| MemoryConsumer::new("b").register(&pool));
            for _ in 0..3 {
                a.grow(10);
                b.grow(100);
            }
            a.shrink(5);
            let memory = |span: &tracing::Span| {
                dftrace_registry::query_state::<QueryMemory>(span).expect("the query's memory")
            };
            assert_eq!(memory(&first).peak_bytes(), 30);
            assert_eq!(memory(&first).current_bytes(), 25);
            assert_eq!(memory(&second).peak_bytes(), 300);
            drop(a);
            assert_eq!(
                memory(&first).current_bytes(),
                0,
                "freed when it unregisters"
            );
            b.grow(1);
            assert_eq!(memory(&second).current_bytes(), 301);
        });
    }
}
