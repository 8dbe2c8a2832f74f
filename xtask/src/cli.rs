//! `cargo xtask cli`: builds `datafusion-cli` at the workspace's pinned
//! version with dftrace turned on, then runs it.
//!
//! The upstream crate source (as cargo fetched it) is copied to
//! `target/dftrace-cli/`, the [`HOOKS`] below are applied to it, and it is
//! built into the workspace's target directory with the workspace's
//! `Cargo.lock`, so it shares the workspace's DataFusion build. The binary
//! lands at `target/<debug|release>/datafusion-cli`. Nothing of
//! `datafusion-cli` is kept in this repository: only these hooks, each a
//! few lines calling `dftrace-cli-hooks`.

use crate::files::write_if_changed;
use crate::process::{cargo, run};
use std::path::{Path, PathBuf};

/// One hook: in `file`, the upstream text `expected` becomes `replacement`.
struct Hook {
    file: &'static str,
    expected: &'static str,
    replacement: &'static str,
}

/// Every change made to the upstream source.
const HOOKS: &[Hook] = &[
    // Telemetry starts before the Tokio runtime and ends after it: tasks the
    // runtime only drops at shutdown (aborted merge inputs, say) still end
    // their spans before the final flush.
    Hook {
        file: "src/main.rs",
        expected: "#[tokio::main]\n/// Calls [`main_inner`], then handles printing errors and returning the correct exit code\npub async fn main() -> ExitCode {\n",
        replacement: "/// Calls [`main_inner`] on a Tokio runtime inside dftrace's telemetry\npub fn main() -> ExitCode {\n    dftrace_cli_hooks::run_main(cli_main())\n}\n\n/// Calls [`main_inner`], then handles printing errors and returning the correct exit code\nasync fn cli_main() -> ExitCode {\n",
    },
    // dftrace's `log` bridge already owns the global logger.
    Hook {
        file: "src/main.rs",
        expected: "    env_logger::init();\n",
        replacement: "    let _ = env_logger::try_init();\n",
    },
    // The session goes through the dftrace registry with every plugin.
    Hook {
        file: "src/main.rs",
        expected: "    let ctx = SessionContext::new_with_config_rt(session_config, runtime_env)\n",
        replacement: "    let ctx = SessionContext::from(dftrace_cli_hooks::session_state(session_config, runtime_env)?)\n",
    },
    // One root query span per statement: planning, execution and printing.
    Hook {
        file: "src/exec.rs",
        expected: "        StatementExecutor::new(statement)\n            .execute(ctx, print_options)\n            .await?;\n",
        replacement: "        let sql = statement.to_string();\n        let statement = StatementExecutor::new(statement).execute(ctx, print_options);\n        dftrace_cli_hooks::traced_statement(task_ctx.session_config(), &sql, statement).await?;\n",
    },
    // The progress line is erased before the result prints.
    Hook {
        file: "src/exec.rs",
        expected: "            adjusted.into_inner().print_batches(\n",
        replacement: "            dftrace_cli_hooks::before_output();\n            adjusted.into_inner().print_batches(\n",
    },
    Hook {
        file: "src/exec.rs",
        expected: "            let stream = execute_stream(physical_plan, task_ctx.clone())?;\n            print_options\n",
        replacement: "            let stream = execute_stream(physical_plan, task_ctx.clone())?;\n            dftrace_cli_hooks::before_output();\n            print_options\n",
    },
    // Hand the executed plan to the metrics summary.
    Hook {
        file: "src/exec.rs",
        expected: "        let physical_plan = df.create_physical_plan().await?;\n",
        replacement: "        let physical_plan = df.create_physical_plan().await?;\n        dftrace_cli_hooks::note_plan(&physical_plan);\n",
    },
];

/// `cargo xtask cli [--release] [--build-only] [-- <datafusion-cli args>]`.
pub(crate) fn run_cli(args: &[String]) -> Result<(), String> {
    let (ours, theirs) = match args.iter().position(|a| a == "--") {
        Some(split) => (&args[..split], &args[split + 1..]),
        None => (args, &[][..]),
    };
    let mut release = false;
    let mut build_only = false;
    for arg in ours {
        match arg.as_str() {
            "--release" => release = true,
            "--build-only" => build_only = true,
            other => {
                return Err(format!(
                    "unknown option `{other}` for `cargo xtask cli`; accepted: --release, \
                     --build-only, then `--` and datafusion-cli's own arguments"
                ));
            }
        }
    }
    let binary = build(release)?;
    if build_only {
        println!("{}", binary.display());
        return Ok(());
    }
    run(std::process::Command::new(&binary).args(theirs))
}

/// Patches and builds the CLI; returns the binary's path.
pub(crate) fn build(release: bool) -> Result<PathBuf, String> {
    let root = crate::workspace_root();
    let version = pinned_version(&root)?;
    let upstream = upstream_source(&root, &version)?;
    let crate_dir = root.join("target/dftrace-cli");
    copy_tree(&upstream.join("src"), &crate_dir.join("src"))?;
    // `lib.rs` includes the README as its crate docs.
    let readme = std::fs::read(upstream.join("README.md"))
        .map_err(|e| format!("upstream README.md: {e}"))?;
    if std::fs::read(crate_dir.join("README.md")).ok() != Some(readme.clone()) {
        std::fs::write(crate_dir.join("README.md"), readme).map_err(|e| e.to_string())?;
    }
    let mut files: Vec<&str> = HOOKS.iter().map(|hook| hook.file).collect();
    files.dedup();
    for file in files {
        let path = upstream.join(file);
        let mut text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for hook in HOOKS.iter().filter(|hook| hook.file == file) {
            if text.matches(hook.expected).count() != 1 {
                return Err(format!(
                    "datafusion-cli {version}: {file} does not contain, exactly once, the text \
                     the dftrace hook expects:\n{}\n(the upstream source changed; update HOOKS in \
                     xtask/src/cli.rs)",
                    hook.expected
                ));
            }
            text = text.replacen(hook.expected, hook.replacement, 1);
        }
        write_if_changed(&crate_dir.join(file), text.as_bytes())?;
    }
    write_if_changed(
        &crate_dir.join("Cargo.toml"),
        manifest(&root, &upstream)?.as_bytes(),
    )?;
    // The workspace's lock pins every shared dependency to what the
    // workspace built; cargo adds the CLI-only ones.
    let lock = crate_dir.join("Cargo.lock");
    if !lock.exists() {
        std::fs::copy(root.join("Cargo.lock"), &lock)
            .map_err(|e| format!("copying Cargo.lock: {e}"))?;
    }
    let mut command = cargo();
    command
        .args(["build", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target"))
        .args(["--bin", "datafusion-cli"]);
    if release {
        command.arg("--release");
    }
    run(&mut command)?;
    Ok(root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("datafusion-cli"))
}

/// The `datafusion-cli` version pinned in `[workspace.dependencies]`.
fn pinned_version(root: &Path) -> Result<String, String> {
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| format!("Cargo.toml: {e}"))?;
    manifest
        .lines()
        .find(|line| line.starts_with("datafusion-cli = "))
        .and_then(|line| line.split("version = \"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
        .ok_or_else(|| {
            "no `datafusion-cli = { version = \"...\" }` in [workspace.dependencies]".to_owned()
        })
}

/// The upstream source as cargo fetched it, fetching it when missing.
fn upstream_source(root: &Path, version: &str) -> Result<PathBuf, String> {
    let find = || -> Option<PathBuf> {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))?;
        std::fs::read_dir(home.join("registry/src"))
            .ok()?
            .filter_map(Result::ok)
            .map(|index| index.path().join(format!("datafusion-cli-{version}")))
            .find(|path| path.join("Cargo.toml").is_file())
    };
    if let Some(path) = find() {
        return Ok(path);
    }
    let fetch = root.join("target/dftrace-cli-fetch");
    std::fs::create_dir_all(fetch.join("src")).map_err(|e| e.to_string())?;
    std::fs::write(
        fetch.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fetch\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n[dependencies]\n\
             datafusion-cli = \"={version}\"\n\n[workspace]\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(fetch.join("src/lib.rs"), "").map_err(|e| e.to_string())?;
    run(cargo()
        .arg("fetch")
        .arg("--manifest-path")
        .arg(fetch.join("Cargo.toml")))?;
    find().ok_or_else(|| {
        format!("cargo fetched datafusion-cli {version}, but its source is not in the registry")
    })
}

/// The upstream manifest without dev-only parts, plus the hooks crate, a
/// workspace of its own, and the workspace's profiles (so artifacts are
/// shared).
fn manifest(root: &Path, upstream: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(upstream.join("Cargo.toml"))
        .map_err(|e| format!("upstream Cargo.toml: {e}"))?;
    let mut out = String::new();
    let mut keep = true;
    for line in text.lines() {
        if line.starts_with('[') {
            keep = !(line.starts_with("[dev-dependencies")
                || line.starts_with("[[example]]")
                || line.starts_with("[[test]]")
                || line.starts_with("[[bench]]"));
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    let hooks = root.join("crates/cli-hooks");
    out.push_str(&format!(
        "\n[dependencies.dftrace-cli-hooks]\npath = \"{}\"\n\n[workspace]\n\n",
        hooks.display()
    ));
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string())?;
    if let Some(start) = workspace.find("\n[profile.") {
        out.push_str(&workspace[start + 1..]);
    }
    Ok(out)
}

/// Copies the upstream tree, leaving the hooked files to the caller.
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        let hooked = HOOKS.iter().any(|hook| entry.path().ends_with(hook.file));
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if !hooked {
            let text = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
            if std::fs::read(&target).ok().as_deref() != Some(&text[..]) {
                std::fs::write(&target, text).map_err(|e| format!("{}: {e}", target.display()))?;
            }
        }
    }
    Ok(())
}
