//! Finding MIDI files in a folder tree (scrape's local sources, encode).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Extensions taken as MIDI files, compared without case.
pub const MIDI_EXTENSIONS: &[&str] = &["mid", "midi", "kar", "rmi"];

pub fn is_midi_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MIDI_EXTENSIONS.iter().any(|m| e.eq_ignore_ascii_case(m)))
}

/// The MIDI files under `root`, recursively, as paths relative to `root`,
/// sorted. Symbolic links to files are followed, links to folders are not
/// (no cycles); hidden entries (starting with `.`) are skipped.
pub fn midi_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let child = rel.join(&name);
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(child);
            } else if is_midi_name(&child) && fs::metadata(root.join(&child))?.is_file() {
                found.push(child);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A relative path as text with `/` separators (for reports and indexes).
pub fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_midi_files_recursively_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        for name in [
            "b/c/x.MID",
            "a.midi",
            "b/y.kar",
            "z.rmi",
            "notes.txt",
            ".hidden.mid",
        ] {
            fs::write(root.join(name), b"").unwrap();
        }
        let names: Vec<String> = midi_files(root)
            .unwrap()
            .iter()
            .map(|p| slash_path(p))
            .collect();
        assert_eq!(names, vec!["a.midi", "b/c/x.MID", "b/y.kar", "z.rmi"]);
    }
}
