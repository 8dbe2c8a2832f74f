//! The publishable crates as a project outside this repository gets them:
//! `cargo package` of each, the `.crate` files unpacked into
//! `target/downstream/packaged/`, and the hosts of `tests/downstream/`
//! (which depend on dftrace by version) built against them through
//! `[patch.crates-io]`, then run.
//!
//! The downstream workspace shares the main one's target directory,
//! `Cargo.lock` and profiles, and its three crates together ask for the
//! features the main workspace builds DataFusion with, so DataFusion is not
//! compiled again: only the dftrace crates (from their packaged sources)
//! and the hosts are.

use crate::files::{mirror_tree, write_if_changed};
use crate::process::{cargo, run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The hosts in `tests/downstream/`, and the binaries they build.
const HOSTS: &[(&str, Option<&str>)] = &[
    ("facade-host", Some("dftrace-downstream-facade-host")),
    ("component-host", Some("dftrace-downstream-component-host")),
    ("packaged-crates", None),
];

/// Packages, builds and runs the downstream hosts.
pub(crate) fn run_all() -> Result<(), String> {
    let root = crate::workspace_root();
    let crates = publishable_crates(&root)?;
    // `--workspace` would package the `publish = false` crates too; each
    // package is built below, from its unpacked form, instead of by
    // `cargo package`'s own verification (which would compile DataFusion
    // once per crate in a target directory of its own).
    let mut package = cargo();
    package.args(["package", "--locked", "--no-verify", "--allow-dirty"]);
    for name in &crates {
        package.args(["-p", name]);
    }
    run(&mut package)?;
    let downstream = root.join("target/downstream");
    let version = workspace_version(&root)?;
    let staging = downstream.join("unpacking");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| e.to_string())?;
    let mut patches = String::new();
    for name in &crates {
        let file = root.join(format!("target/package/{name}-{version}.crate"));
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&file)
            .arg("-C")
            .arg(&staging))?;
        let dir = format!("{name}-{version}");
        mirror_tree(&staging.join(&dir), &downstream.join("packaged").join(&dir))?;
        patches.push_str(&format!("{name} = {{ path = \"packaged/{dir}\" }}\n"));
    }
    std::fs::remove_dir_all(&staging).map_err(|e| e.to_string())?;

    for (host, _) in HOSTS {
        mirror_tree(
            &root.join("tests/downstream").join(host),
            &downstream.join(host),
        )?;
    }
    let members: Vec<String> = HOSTS
        .iter()
        .map(|(host, _)| format!("\"{host}\""))
        .collect();
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string())?;
    let profiles = workspace
        .find("\n[profile.")
        .map(|start| &workspace[start + 1..])
        .unwrap_or_default();
    let manifest = format!(
        "# Written by `cargo xtask test` (xtask/src/downstream.rs).\n[workspace]\nresolver = \
         \"3\"\nmembers = [{}]\n\n# The packaged crates, as crates.io would serve them.\n\
         [patch.crates-io]\n{patches}\n{profiles}",
        members.join(", ")
    );
    write_if_changed(&downstream.join("Cargo.toml"), manifest.as_bytes())?;
    // The main workspace's versions of every shared dependency; cargo adds
    // the hosts and the patched crates.
    let lock = std::fs::read(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    write_if_changed(&downstream.join("Cargo.lock"), &lock)?;

    run(cargo()
        .arg("build")
        .arg("--manifest-path")
        .arg(downstream.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target"))
        .arg("--workspace"))?;
    for (host, binary) in HOSTS {
        let Some(binary) = binary else { continue };
        let mut command = host_command(&root, &downstream, host, binary)?;
        run(&mut command).map_err(|error| format!("downstream {host}: {error}"))?;
    }
    check_facade_default_features(&root, &downstream)
}

/// A host's binary with only the settings the test gives it (none of the
/// caller's `DFTRACE_`/`OTEL_`): `maximal`, the file sink, a directory of
/// its own, emptied first.
fn host_command(
    root: &Path,
    downstream: &Path,
    host: &str,
    binary: &str,
) -> Result<Command, String> {
    let traces = downstream.join("traces").join(host);
    if traces.exists() {
        std::fs::remove_dir_all(&traces).map_err(|e| e.to_string())?;
    }
    let mut command = Command::new(root.join("target/debug").join(binary));
    for (name, _) in std::env::vars() {
        if name.starts_with("DFTRACE_") || name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command
        .env("DFTRACE_PRESET", "maximal")
        .env("DFTRACE_EXPORT__SINK", "file")
        .env("DFTRACE_EXPORT__FILE__DIR", &traces);
    Ok(command)
}

/// What the facade's default features cover, as the README states it: the
/// README's configuration block loads and runs in the facade host (built
/// with the default features only), and `examples/dftrace.toml`, which
/// needs more, fails there with an error naming the feature to add.
fn check_facade_default_features(root: &Path, downstream: &Path) -> Result<(), String> {
    const HOST: &str = "facade-host";
    const BINARY: &str = "dftrace-downstream-facade-host";
    let readme = std::fs::read_to_string(root.join("README.md")).map_err(|e| e.to_string())?;
    let block = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|section| section.split("```toml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .ok_or("README.md: no ```toml block under `## Configuration`")?;
    let readme_config = downstream.join("readme-config.toml");
    write_if_changed(&readme_config, block.as_bytes())?;
    let too_much = |error: String| {
        format!(
            "the README's configuration block needs more than the facade's default features \
             (README.md says it does not): {error}"
        )
    };
    // A query traced with it (the host checks its trace for a redacted
    // preview, which the block turns off: the environment outranks the file).
    run(host_command(root, downstream, HOST, BINARY)?
        .env("DFTRACE_CONFIG", &readme_config)
        .env("DFTRACE_RULES__PREVIEW_LIMIT", "5"))
    .map_err(too_much)?;
    // Its OTLP settings as they are: the exporter is built at start-up
    // (to an endpoint nothing listens on; no span is sent).
    run(host_command(root, downstream, HOST, BINARY)?
        .arg("check-config")
        .env("DFTRACE_CONFIG", &readme_config)
        .env("DFTRACE_EXPORT__SINK", "otlp")
        .env("DFTRACE_EXPORT__OTLP__ENDPOINT", "http://127.0.0.1:9"))
    .map_err(too_much)?;
    // The run above cannot see a gRPC protocol: this downstream workspace
    // also builds dftrace-cli-hooks, which turns on bootstrap's `grpc` for
    // every member. The block's protocol against the default features:
    let manifest = std::fs::read_to_string(root.join("crates/dftrace/Cargo.toml"))
        .map_err(|e| format!("crates/dftrace/Cargo.toml: {e}"))?;
    let defaults = manifest
        .lines()
        .find_map(|line| line.strip_prefix("default = "))
        .ok_or("crates/dftrace/Cargo.toml: no default features")?;
    let grpc_block = block
        .lines()
        .any(|line| line.trim_start().starts_with("protocol = \"grpc\""));
    if grpc_block && !defaults.contains("\"export-grpc\"") {
        return Err(too_much(format!(
            "it sets `protocol = \"grpc\"`, which needs the `export-grpc` feature (default \
             features: {defaults})"
        )));
    }

    let complete = root.join("examples/dftrace.toml");
    let output = host_command(root, downstream, HOST, BINARY)?
        .arg("check-config")
        .env("DFTRACE_CONFIG", &complete)
        .output()
        .map_err(|e| format!("{BINARY}: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("with the `dftrace` crate, ") {
        return Err(format!(
            "examples/dftrace.toml under the facade's default features should fail with an \
             error naming the facade feature to add ({}); it exited with {}:\n{stderr}",
            "export-grpc, history, udf, caches, memory", output.status
        ));
    }
    println!(
        "downstream: the README's configuration runs on the facade's default features; \
         examples/dftrace.toml asks for more: {}",
        stderr.trim()
    );
    Ok(())
}

/// The names of the workspace's publishable crates (`crates/*`).
fn publishable_crates(root: &Path) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let dirs = std::fs::read_dir(root.join("crates")).map_err(|e| format!("crates/: {e}"))?;
    let mut dirs: Vec<PathBuf> = dirs.filter_map(Result::ok).map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let manifest = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        if text.lines().any(|line| line.trim() == "publish = false") {
            continue;
        }
        let name = text
            .lines()
            .find_map(|line| line.strip_prefix("name = \""))
            .and_then(|rest| rest.split('"').next())
            .ok_or_else(|| format!("{}: no package name", manifest.display()))?;
        names.push(name.to_owned());
    }
    Ok(names)
}

/// `[workspace.package] version`.
fn workspace_version(root: &Path) -> Result<String, String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string())?;
    let package = manifest
        .split("[workspace.package]")
        .nth(1)
        .ok_or("no [workspace.package] in Cargo.toml")?;
    package
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
        .ok_or_else(|| "no version in [workspace.package]".to_owned())
}
