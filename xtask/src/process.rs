//! Running child processes with clear errors.

use std::process::Command;

/// The cargo that runs this xtask (`$CARGO`), so the same toolchain is used.
///
/// Without the variables `cargo run` set for the xtask binary itself
/// (`CARGO_PKG_NAME=xtask`, ...): build scripts that watch them (`ring`'s
/// does) would see them change between `cargo xtask` and plain `cargo`, and
/// every switch would rebuild them and all that depends on them.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(crate::workspace_root());
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `command`, echoing it first; fails with the command line and status.
pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let line = describe(command);
    eprintln!("\n$ {line}");
    let status = command
        .status()
        .map_err(|error| format!("cannot start `{line}`: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed with {status}"))
    }
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
