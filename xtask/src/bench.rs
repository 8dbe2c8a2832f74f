//! `cargo xtask bench [args]`: the overhead benchmark (`bench/`), built in
//! release mode; arguments go to it (`--quick`, `--scale`, `--queries`,
//! `--rounds`, `--short-runs`, `--warmup`, and `--profile CONFIGURATION`:
//! only that configuration's short loop, for `perf`).

use crate::process::{cargo, run as run_command};

pub(crate) fn run_bench(args: &[String]) -> Result<(), String> {
    run_command(
        cargo()
            .args(["run", "--release", "--locked", "-p", "dftrace-bench", "--"])
            .args(args),
    )
}
