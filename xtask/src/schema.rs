//! `cargo xtask schema [--update]`: the span schema and configuration
//! reference checks; with `--update`, regenerate `docs/span-schema.json`,
//! `docs/span-schema.md` and the tables of `docs/configuration.md` from what
//! the code produces (a deliberate change, reviewed in the diff).

use crate::peers;
use crate::process::{cargo, run as run_command};

pub(crate) fn run_schema(args: &[String]) -> Result<(), String> {
    let update = match args {
        [] => false,
        [flag] if flag == "--update" => true,
        [other, ..] => {
            return Err(format!(
                "`cargo xtask schema` takes only `--update`, got `{other}`"
            ));
        }
    };
    let peers = peers::ensure()?;
    // The span schema's drift test, then the docs tests (a module of the
    // `no_global_state` test binary).
    for (test_binary, filter) in [("span_schema", None), ("no_global_state", Some("docs::"))] {
        let mut command = cargo();
        command.args([
            "test",
            "--locked",
            // `--workspace` keeps the features of the main test build (one
            // package alone would resolve DataFusion's features anew).
            "--workspace",
            "--test",
            test_binary,
        ]);
        if let Some(filter) = filter {
            command.args(["--", filter]);
        }
        for (var, path) in peers.env() {
            command.env(var, path);
        }
        if update {
            command.env("DFTRACE_UPDATE_DOCS", "1");
        }
        run_command(&mut command)?;
    }
    if update {
        eprintln!(
            "\nxtask schema: docs regenerated; review `git diff docs/` and document any TODO entries"
        );
    }
    Ok(())
}
