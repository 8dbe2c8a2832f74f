//! Runnable examples of dftrace; see `examples/` (`cargo run -p
//! dftrace-examples --example <name>`).

// The Rust snippets of the docs compile (and their `no_run` programs link)
// as doctests of this crate, which depends on every dftrace crate.
#[cfg(doctest)]
#[doc = include_str!("../../docs/configuration.md")]
pub struct ConfigurationDoc;

#[cfg(doctest)]
#[doc = include_str!("../../docs/distributed.md")]
pub struct DistributedDoc;
