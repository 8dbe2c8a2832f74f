//! The declared `rust-version` is the true minimum: it equals the highest
//! `rust-version` among the dependencies of the publishable crates (with
//! every feature on), and the running toolchain meets it. Only one
//! toolchain can be installed on the CI machines, so the check compares
//! declarations rather than building with an older compiler; nothing in
//! dftrace's own code needs more than its dependencies do.

use crate::process::cargo;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Fails when the workspace's `rust-version` differs from what its
/// dependencies declare, or when the toolchain is older.
pub(crate) fn check() -> Result<(), String> {
    let output = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--all-features",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    let (declared, required) = versions(&metadata)?;
    if parse(&declared) != parse(&required.0) {
        return Err(format!(
            "rust-version is {declared}, but the dependencies need {} ({} declares it): set \
             `rust-version = \"{}\"` in [workspace.package] and the README's toolchain line",
            required.0, required.1, required.0
        ));
    }
    let rustc = cargo_rustc_version()?;
    if parse(&rustc) < parse(&declared) {
        return Err(format!(
            "this toolchain's rustc is {rustc}, below the rust-version {declared}"
        ));
    }
    eprintln!(
        "\nxtask: rust-version {declared} is the dependencies' minimum ({} declares it); rustc \
         {rustc} meets it",
        required.1
    );
    Ok(())
}

/// The workspace's declared `rust-version`, and the highest one among the
/// publishable crates' normal and build dependencies (with its package).
fn versions(metadata: &Value) -> Result<(String, (String, String)), String> {
    let packages: HashMap<&str, &Value> = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?
        .iter()
        .filter_map(|package| Some((package["id"].as_str()?, package)))
        .collect();
    let members: HashSet<&str> = metadata["workspace_members"]
        .as_array()
        .ok_or("cargo metadata: no workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // `publish = false` is an empty list of allowed registries.
    let publishable: Vec<&str> = members
        .iter()
        .copied()
        .filter(|id| {
            packages[id]["publish"]
                .as_array()
                .is_none_or(|r| !r.is_empty())
        })
        .collect();
    let declared = publishable
        .iter()
        .filter_map(|id| packages[id]["rust_version"].as_str())
        .max_by_key(|version| parse(version))
        .ok_or("no publishable crate declares a rust-version")?
        .to_owned();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata: no resolve graph")?
        .iter()
        .filter_map(|node| Some((node["id"].as_str()?, node)))
        .collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack = publishable.clone();
    let mut required = ("1.0".to_owned(), "nothing".to_owned());
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let package = packages[id];
        if !members.contains(id)
            && let Some(version) = package["rust_version"].as_str()
            && parse(version) > parse(&required.0)
        {
            let name = package["name"].as_str().unwrap_or("?");
            let package_version = package["version"].as_str().unwrap_or("?");
            required = (version.to_owned(), format!("{name} {package_version}"));
        }
        for dep in nodes[id]["deps"].as_array().into_iter().flatten() {
            let runtime = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|kind| kind["kind"].as_str() != Some("dev"));
            if runtime && let Some(pkg) = dep["pkg"].as_str() {
                stack.push(pkg);
            }
        }
    }
    Ok((declared, required))
}

/// `1.94` and `1.94.0` are the same version.
fn parse(version: &str) -> (u64, u64, u64) {
    let mut parts = version
        .split(['.', '-', ' '])
        .map(|part| part.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn cargo_rustc_version() -> Result<String, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run rustc --version: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| format!("unexpected rustc --version output: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(parse("1.94"), parse("1.94.0"));
        assert!(parse("1.100.0") > parse("1.94.1"));
        assert_eq!(parse("1.97.0-nightly"), (1, 97, 0));
    }

    #[test]
    fn the_highest_runtime_dependency_sets_the_minimum_and_dev_dependencies_do_not() {
        let metadata = serde_json::json!({
            "packages": [
                {"id": "ours", "name": "ours", "version": "0.1.0", "rust_version": "1.88", "publish": null},
                {"id": "tool", "name": "tool", "version": "0.0.0", "rust_version": null, "publish": []},
                {"id": "dep", "name": "dep", "version": "2.0.0", "rust_version": "1.94.0", "publish": null},
                {"id": "devdep", "name": "devdep", "version": "1.0.0", "rust_version": "1.99", "publish": null},
            ],
            "workspace_members": ["ours", "tool"],
            "resolve": {"nodes": [
                {"id": "ours", "deps": [
                    {"pkg": "dep", "dep_kinds": [{"kind": null}]},
                    {"pkg": "devdep", "dep_kinds": [{"kind": "dev"}]},
                ]},
                {"id": "tool", "deps": [{"pkg": "devdep", "dep_kinds": [{"kind": null}]}]},
                {"id": "dep", "deps": []},
                {"id": "devdep", "deps": []},
            ]},
        });
        let (declared, required) = versions(&metadata).unwrap_or_default();
        assert_eq!(declared, "1.88");
        assert_eq!(required, ("1.94.0".to_owned(), "dep 2.0.0".to_owned()));
    }
}
