//! Links every publishable dftrace crate (see `Cargo.toml`).

pub use dftrace;
pub use dftrace_cli_hooks;
pub use dftrace_view;
