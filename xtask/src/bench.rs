//! `cargo xtask bench [args]`: the overhead benchmark (`bench/`), built in
//! release mode; arguments go to it (`--quick`, `--scale`, `--queries`,
//! `--rounds`, `--short-runs`, `--warmup`, and `--profile CONFIGURATION`:
//! only that configuration's short loop, for `perf`), except `--allocator
//! system|mimalloc`, which picks the allocator it is built with.

use crate::process::{cargo, run as run_command};

pub(crate) fn run_bench(args: &[String]) -> Result<(), String> {
    let mut mimalloc = false;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg != "--allocator" {
            rest.push(arg.clone());
            continue;
        }
        mimalloc = match args.next().map(String::as_str) {
            Some("system") => false,
            Some("mimalloc") => true,
            other => {
                return Err(format!(
                    "--allocator takes `system` (glibc's malloc, the default) or `mimalloc`, not {}",
                    other.map_or("nothing".to_owned(), |name| format!("`{name}`"))
                ));
            }
        };
    }
    let mut command = cargo();
    command.args(["run", "--release", "--locked", "-p", "dftrace-bench"]);
    if mimalloc {
        command.args(["--features", "mimalloc"]);
    }
    run_command(command.arg("--").args(rest))
}
