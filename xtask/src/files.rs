//! Writing generated trees without touching what did not change, so cargo
//! does not rebuild a crate whose sources are the same.

use std::path::Path;

/// Writes only on change.
pub(crate) fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes `to` hold exactly the files of `from`, writing only the changed
/// ones and removing the ones `from` no longer has.
pub(crate) fn mirror_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        names.push(entry.file_name());
        if entry.path().is_dir() {
            mirror_tree(&entry.path(), &target)?;
        } else {
            let bytes = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
            write_if_changed(&target, &bytes)?;
        }
    }
    for entry in std::fs::read_dir(to).map_err(|e| format!("{}: {e}", to.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        if !names.contains(&entry.file_name()) {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}
