//! Runnable examples of dftrace; see `examples/` (`cargo run -p
//! dftrace-examples --example <name>`).
