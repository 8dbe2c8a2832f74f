//! Which operator the current thread is running: dftrace-rules' operator
//! streams set it around each poll, so a function called inside the poll
//! (`dftrace-udf`) knows the operator that evaluated it. A thread-local
//! word, written twice per poll; nothing else is paid.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// The key of the operator being polled on this thread; 0 for none.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// The last key handed out.
static LAST_KEY: AtomicU64 = AtomicU64::new(0);

/// An operator of a running query, as an opaque key: the same for every
/// partition of the operator, and never given to another operator in the
/// life of the process (so a key cached from one query never matches an
/// operator of a later one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorKey(u64);

impl OperatorKey {
    /// A key no operator has had before.
    pub fn unique() -> Self {
        OperatorKey(LAST_KEY.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The key as a number (never 0), for keeping it in an atomic.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The operator whose stream this thread is polling, if any.
pub fn current_operator() -> Option<OperatorKey> {
    let key = CURRENT.with(Cell::get);
    (key != 0).then_some(OperatorKey(key))
}

/// Marks `key` as the operator this thread runs until the scope is dropped
/// (then the operator polled before it, its parent, is current again).
pub fn enter_operator(key: OperatorKey) -> OperatorScope {
    let previous = CURRENT.with(|current| current.replace(key.0));
    OperatorScope {
        previous,
        _same_thread: PhantomData,
    }
}

/// Restores the previous operator when dropped; stays on its thread.
#[derive(Debug)]
pub struct OperatorScope {
    previous: u64,
    _same_thread: PhantomData<*const ()>,
}

impl Drop for OperatorScope {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
    }
}

#[cfg(test)]
mod tests {
    use super::{OperatorKey, current_operator, enter_operator};

    #[test]
    fn scopes_nest_and_restore() {
        let (parent, child) = (OperatorKey::unique(), OperatorKey::unique());
        assert_ne!(parent, child);
        assert_eq!(current_operator(), None);
        {
            let _parent = enter_operator(parent);
            {
                let _child = enter_operator(child);
                assert_eq!(current_operator(), Some(child));
            }
            assert_eq!(current_operator(), Some(parent));
        }
        assert_eq!(current_operator(), None);
    }
}
