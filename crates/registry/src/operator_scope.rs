//! Which operator the current thread is running: dftrace-rules' operator
//! streams set it around each poll, so a function called inside the poll
//! (`dftrace-udf`) knows the operator that evaluated it. A thread-local
//! word, written twice per poll; nothing else is paid.

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    /// The key of the operator being polled on this thread; 0 for none.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// An operator of a running query, as an opaque key: the same for every
/// partition of the operator, different for each operator of the query
/// (the address of dftrace-rules' record of it, alive until the query's
/// plan is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorKey(usize);

impl OperatorKey {
    /// The key of the operator `record` stands for.
    pub fn of<T>(record: &std::sync::Arc<T>) -> Self {
        OperatorKey(std::sync::Arc::as_ptr(record).cast::<()>() as usize)
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
    previous: usize,
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
    use std::sync::Arc;

    #[test]
    fn scopes_nest_and_restore() {
        let (parent, child) = (Arc::new(1_u8), Arc::new(2_u8));
        assert_eq!(current_operator(), None);
        {
            let _parent = enter_operator(OperatorKey::of(&parent));
            {
                let _child = enter_operator(OperatorKey::of(&child));
                assert_eq!(current_operator(), Some(OperatorKey::of(&child)));
            }
            assert_eq!(current_operator(), Some(OperatorKey::of(&parent)));
        }
        assert_eq!(current_operator(), None);
    }
}
