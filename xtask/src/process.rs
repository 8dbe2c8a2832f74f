//! Running child processes with clear errors.

use std::process::Command;

/// The cargo that runs this xtask (`$CARGO`), so the same toolchain is used.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(crate::workspace_root());
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
