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
/// sorted (see [`corpus_files`]; what it skips is left out here).
pub fn midi_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(corpus_files(root)?.0)
}

/// An entry of a folder tree that [`corpus_files`] passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    /// Relative to the root, `/`-separated (lossy for names that are not UTF-8).
    pub path: String,
    pub reason: String,
}

/// The MIDI files under `root`, recursively, as paths relative to `root`,
/// sorted, and the entries skipped on the way with the reason, sorted.
/// Hidden entries (starting with `.`) and files without a MIDI extension are
/// ignored. A symbolic link to a regular file inside `root` is followed;
/// other links (to folders: no cycles; outside `root`; broken), FIFOs,
/// sockets and devices named like MIDI files, names that are not UTF-8 and
/// folders that cannot be listed are skipped: no entry is ever opened
/// except regular files and folders, so a FIFO cannot hang the walk.
pub fn corpus_files(root: &Path) -> io::Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let canonical_root = root.canonicalize()?;
    let mut listing = Listing::default();
    match fs::read_dir(root) {
        Ok(entries) => list_folder(root, &canonical_root, PathBuf::new(), entries, &mut listing)?,
        Err(e) => return Err(e),
    }
    let Listing {
        mut found,
        mut skipped,
    } = listing;
    sort_paths(&mut found);
    skipped.sort();
    Ok((found, skipped))
}

#[derive(Default)]
struct Listing {
    found: Vec<PathBuf>,
    skipped: Vec<Skipped>,
}

impl Listing {
    fn skip(&mut self, rel: &Path, reason: String) {
        self.skipped.push(Skipped {
            path: slash_path(rel),
            reason,
        })
    }
}

/// From this many subfolders on, a folder's subfolders are listed in
/// parallel (rayon).
const PARALLEL_FOLDERS: usize = 8;

/// Lists folder `rel` (its entries given) into `out`, then its subfolders,
/// in parallel when there are many: listing 60,000 files in 120 folders is
/// otherwise a serial tenth of a no-op.
fn list_folder(
    root: &Path,
    canonical_root: &Path,
    rel: PathBuf,
    entries: fs::ReadDir,
    out: &mut Listing,
) -> io::Result<()> {
    let mut subfolders = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let child = rel.join(&name);
        let kind = entry.file_type()?;
        let midi = is_midi_name(&child);
        if name.to_str().is_none() {
            if kind.is_dir() || midi {
                out.skip(&child, "the name is not valid UTF-8 (rename it)".into());
            }
        } else if kind.is_dir() {
            subfolders.push(child);
        } else if kind.is_symlink() {
            match link_target(canonical_root, &root.join(&child)) {
                Ok(()) if midi => out.found.push(child),
                Ok(()) => {}
                Err(why) if midi || why.contains("folder") => out.skip(&child, why),
                Err(_) => {}
            }
        } else if midi && kind.is_file() {
            out.found.push(child);
        } else if midi {
            out.skip(&child, format!("not a regular file ({})", kind_name(kind)));
        }
    }
    use rayon::prelude::*;
    let list = |rel: PathBuf| {
        let mut part = Listing::default();
        match fs::read_dir(root.join(&rel)) {
            Ok(entries) => list_folder(root, canonical_root, rel, entries, &mut part)?,
            Err(e) => part.skip(&rel, format!("cannot list the folder: {e}")),
        }
        Ok(part)
    };
    // A few folders are listed here: starting the thread pool costs more
    // than it saves (the demo corpus has three).
    let parts: Vec<io::Result<Listing>> = if subfolders.len() < PARALLEL_FOLDERS {
        subfolders.into_iter().map(list).collect()
    } else {
        subfolders.into_par_iter().map(list).collect()
    };
    for part in parts {
        let part = part?;
        out.found.extend(part.found);
        out.skipped.extend(part.skipped);
    }
    Ok(())
}

/// Sorts relative, normalized paths in `Path`'s order (component by
/// component) by comparing bytes with the separator as the smallest byte:
/// the same order, without `Path`'s component parsing on each of the
/// ~n log n comparisons (a measurable part of a no-op over 6,000 files).
fn sort_paths(paths: &mut [PathBuf]) {
    use std::os::unix::ffi::OsStrExt;
    let rank = |b: u8| if b == b'/' { 0 } else { u16::from(b) + 1 };
    paths.sort_unstable_by(|a, b| {
        let (a, b) = (a.as_os_str().as_bytes(), b.as_os_str().as_bytes());
        match a.iter().zip(b).position(|(x, y)| x != y) {
            Some(i) => rank(a[i]).cmp(&rank(b[i])),
            None => a.len().cmp(&b.len()),
        }
    });
}

/// `Ok` when the link at `path` leads to a regular file inside the root,
/// else why it is not followed.
fn link_target(canonical_root: &Path, path: &Path) -> Result<(), String> {
    let target = fs::canonicalize(path).map_err(|e| format!("a broken link ({e})"))?;
    let meta = fs::metadata(&target).map_err(|e| format!("a broken link ({e})"))?;
    if meta.is_dir() {
        Err("a link to a folder: not followed (no cycles)".into())
    } else if !target.starts_with(canonical_root) {
        Err(format!(
            "a link to {}, outside the source folder: not followed",
            target.display()
        ))
    } else if !meta.is_file() {
        Err(format!(
            "a link to a {}, not a regular file",
            kind_name(meta.file_type())
        ))
    } else {
        Ok(())
    }
}

/// What a file system entry is, in words ("FIFO", "character device").
pub fn kind_name(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "folder"
    } else if kind.is_file() {
        "regular file"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
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
    fn byte_sort_is_path_order() {
        let names = [
            "a/b", "a-b", "a", "a/b/c", "a.mid", "ab", "a/a", "b", "a0/x", "A", "é/x", "a b",
        ];
        let mut ours: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
        let mut std_order = ours.clone();
        std_order.sort();
        sort_paths(&mut ours);
        assert_eq!(ours, std_order);
    }

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
