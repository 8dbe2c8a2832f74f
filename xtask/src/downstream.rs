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
        let traces = downstream.join("traces").join(host);
        if traces.exists() {
            std::fs::remove_dir_all(&traces).map_err(|e| e.to_string())?;
        }
        let mut command = Command::new(root.join("target/debug").join(binary));
        // Only what the test sets: none of the caller's DFTRACE_/OTEL_.
        for (name, _) in std::env::vars() {
            if name.starts_with("DFTRACE_") || name.starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        command
            .env("DFTRACE_PRESET", "maximal")
            .env("DFTRACE_EXPORT__SINK", "file")
            .env("DFTRACE_EXPORT__FILE__DIR", &traces);
        run(&mut command).map_err(|error| format!("downstream {host}: {error}"))?;
    }
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
