//! The tests that read their spans from `dftrace_tests::capture`: one test
//! binary, because every binary links DataFusion (about 270 MB each on the
//! disk CI shares) and these share what a process may hold once — the global
//! subscriber and tracer provider of the in-memory capture. Each test tells
//! its spans apart by trace id.
//!
//! The plugins linked here (by `use … as _` in the modules) are linked for
//! every test of the binary. A test that needs the process to itself — its
//! own subscriber or meter provider, a plugin no other test may see or one
//! that must not be linked, a process-wide count such as the queries in
//! flight — is a binary of its own in `tests/tests/`.

mod caches;
mod history;
mod metrics_summary;
mod object_store_spans;
mod operator_spans;
mod preview_e2e;
mod rules_spans;
mod tpch_load;
mod udf;
