//! What the memory pool granted one query: `dftrace-memory` keeps it in the
//! query's root span extensions (see [`crate::current_query_state`]) and
//! observers read it at the query's end (`dftrace-history`'s
//! `dftrace.queries`, the root span's attributes). A handful of atomics, so
//! that a reservation's growth costs no lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One query's memory pool figures.
#[derive(Debug, Default)]
pub struct QueryMemory {
    current: AtomicUsize,
    peak: AtomicUsize,
    failed: AtomicU64,
    /// The limit of the pool its reservations were made in; 0 for none.
    limit: AtomicUsize,
}

impl QueryMemory {
    /// The query's reservations grew by `bytes`.
    pub fn grow(&self, bytes: usize) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// The query's reservations shrank by `bytes`.
    pub fn shrink(&self, bytes: usize) {
        // Never below zero, whatever order concurrent partitions report in.
        let _ = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_sub(bytes))
            });
    }

    /// The pool refused the query a reservation.
    pub fn refused(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes the limit of the pool the query reserves in (`None`: the pool
    /// has none). The pool of the query's session, read when it reserves,
    /// not when the session was built: a session's pool can be replaced.
    pub fn set_limit(&self, limit: Option<usize>) {
        self.limit.store(limit.unwrap_or(0), Ordering::Relaxed);
    }

    /// The limit of the pool the query reserved in, when it has one.
    pub fn limit(&self) -> Option<usize> {
        Some(self.limit.load(Ordering::Relaxed)).filter(|limit| *limit > 0)
    }

    /// The most the query held at once, in bytes.
    pub fn peak_bytes(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// What the query holds now, in bytes.
    pub fn current_bytes(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Reservations the pool refused the query.
    pub fn failed_reservations(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_the_most_held_at_once() {
        let memory = QueryMemory::default();
        memory.grow(100);
        memory.grow(50);
        memory.shrink(120);
        memory.grow(10);
        memory.refused();
        assert_eq!(memory.peak_bytes(), 150);
        assert_eq!(memory.current_bytes(), 40);
        assert_eq!(memory.failed_reservations(), 1);
        memory.shrink(1000);
        assert_eq!(memory.current_bytes(), 0);
    }
}
