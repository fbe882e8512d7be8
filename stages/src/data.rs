//! Where the bundled data (the demo corpus) lives.

use std::path::{Path, PathBuf};

/// `$VGMAKE_DATA`, else the repository's `data/` folder this crate was
/// built from.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("VGMAKE_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("data"),
    }
}

/// The data folder for a project in `project_dir`: `$VGMAKE_DATA`, else the
/// project's own `data/` when it holds the demo corpus, else
/// [`default_dir`].
pub fn dir_for_project(project_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("VGMAKE_DATA") {
        return PathBuf::from(dir);
    }
    let local = project_dir.join("data");
    if local.join("demo").is_dir() {
        return local;
    }
    default_dir()
}
