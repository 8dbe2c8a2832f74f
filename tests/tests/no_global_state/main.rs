//! The tests that install no global telemetry in their own process: they
//! drive child processes (the traced CLI, `scripted_host`, the examples, the
//! view, distributed workers) or check files and configuration. One test
//! binary, because every binary links DataFusion (about 270 MB each on the
//! disk CI shares).
//!
//! A test that needs the process to itself — its own subscriber or meter
//! provider, a plugin no other test may see or one that must not be linked,
//! a process-wide count, the machine's cores to itself (reliability's
//! collector faults) — is a binary of its own in `tests/tests/`.

mod bad_input;
mod bootstrap_export;
mod cli;
mod distributed;
mod docs;
mod examples;
mod view;
