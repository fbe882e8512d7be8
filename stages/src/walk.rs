//! Finding MIDI files in a folder tree (scrape's local sources, encode).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use vgmake_api::{EntryKind, Folders, Listing, ReadFolders};

/// Extensions taken as MIDI files, compared without case.
pub const MIDI_EXTENSIONS: &[&str] = &["mid", "midi", "kar", "rmi"];

/// Whether the file name ends in a MIDI extension (`Path::extension`'s
/// rule, on bytes: a no-op checks every corpus name).
pub fn is_midi_name(path: &Path) -> bool {
    let bytes = path.as_os_str().as_bytes();
    let name = &bytes[bytes.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1)..];
    match name.iter().rposition(|b| *b == b'.') {
        Some(dot) if dot > 0 => {
            let ext = &name[dot + 1..];
            MIDI_EXTENSIONS
                .iter()
                .any(|m| ext.eq_ignore_ascii_case(m.as_bytes()))
        }
        _ => false,
    }
}

/// The MIDI files under `root`, recursively, as paths relative to `root`,
/// sorted (see [`corpus_files`]; what it skips is left out here).
pub fn midi_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(corpus_files(root, &ReadFolders)?.0)
}

/// [`midi_files`] with each file's bytes (the benchmarks' corpus, held in
/// memory); an error names the folder or the file that could not be read.
pub fn read_midi_files(root: &Path) -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let paths = midi_files(root).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("listing MIDI files in {}: {e}", root.display()),
        )
    })?;
    paths
        .into_iter()
        .map(|rel| {
            let path = root.join(&rel);
            let bytes = fs::read(&path).map_err(|e| {
                io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
            })?;
            Ok((rel, bytes))
        })
        .collect()
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
/// Folders are listed through `folders` (the engine's listing cache, when
/// the engine asks). Hidden entries (starting with `.`) and files without a
/// MIDI extension are ignored. A symbolic link to a regular file inside
/// `root` is followed; other links (to folders: no cycles; outside `root`;
/// broken), FIFOs, sockets and devices named like MIDI files, names that
/// are not UTF-8 and folders that cannot be listed are skipped: no entry is
/// ever opened except regular files and folders, so a FIFO cannot hang the
/// walk.
pub fn corpus_files(
    root: &Path,
    folders: &dyn Folders,
) -> io::Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let (found, skipped) = corpus_paths(root, folders)?;
    let found = found
        .iter()
        .map(|path| PathBuf::from(OsStr::from_bytes(relative(root, path))))
        .collect();
    Ok((found, skipped))
}

/// [`corpus_files`] as paths under `root` (`root` joined with each),
/// allocated once each: what the engine stats.
pub fn corpus_paths(
    root: &Path,
    folders: &dyn Folders,
) -> io::Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let canonical_root = root.canonicalize()?;
    let listing = folders.list(root)?;
    let walk = Walk {
        root,
        canonical_root: &canonical_root,
        folders,
    };
    let mut found = walk.folder(root.to_path_buf(), &listing);
    // Already in order (each folder's entries come sorted by name, and a
    // folder's files sort where its name does): the sort finds one run and
    // stops in linear time, and keeps the order right whatever a listing says.
    sort_paths(&mut found.found);
    found.skipped.sort();
    Ok((found.found, found.skipped))
}

/// The bytes of `path` (found under `root` by [`corpus_paths`]) after
/// `root` and its separator.
pub fn relative<'a>(root: &Path, path: &'a Path) -> &'a [u8] {
    let root = root.as_os_str().as_bytes();
    let bytes = path.as_os_str().as_bytes();
    debug_assert!(bytes.starts_with(root));
    let skip = root.len() + usize::from(!root.ends_with(b"/"));
    bytes.get(skip..).unwrap_or_default()
}

#[derive(Default)]
struct Found {
    found: Vec<PathBuf>,
    skipped: Vec<Skipped>,
}

impl Found {
    /// `path` (under `root`) skipped, and why.
    fn skip(&mut self, root: &Path, path: &Path, reason: String) {
        let rel = Path::new(OsStr::from_bytes(relative(root, path)));
        self.skipped.push(Skipped {
            path: slash_path(rel),
            reason,
        })
    }
}

struct Walk<'a> {
    root: &'a Path,
    canonical_root: &'a Path,
    folders: &'a dyn Folders,
}

/// From this many subfolders on, a folder's subfolders are listed in
/// parallel (rayon).
const PARALLEL_FOLDERS: usize = 8;

impl Walk<'_> {
    /// What folder `dir` (under the root; its entries given) and its
    /// subfolders hold, in path order. Subfolders are walked in parallel
    /// when there are many: listing 60,000 files in 120 folders is
    /// otherwise a serial tenth of a no-op.
    fn folder(&self, dir: PathBuf, listing: &Listing) -> Found {
        let mut out = Found::default();
        // Where each subfolder's files go in `out.found`, to keep path order.
        let mut subfolders: Vec<(usize, PathBuf)> = Vec::new();
        for (name, kind) in listing.iter() {
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let child = joined(&dir, name.as_ref());
            let midi = is_midi_name(name.as_ref());
            let root = self.root;
            if name.to_str().is_none() {
                if kind == EntryKind::Folder || midi {
                    out.skip(
                        root,
                        &child,
                        "the name is not valid UTF-8 (rename it)".into(),
                    );
                }
                continue;
            }
            match kind {
                EntryKind::Folder => subfolders.push((out.found.len(), child)),
                EntryKind::Symlink => match link_target(self.canonical_root, &child) {
                    Ok(()) if midi => out.found.push(child),
                    Ok(()) => {}
                    Err(why) if midi || why.contains("folder") => out.skip(root, &child, why),
                    Err(_) => {}
                },
                EntryKind::File if midi => out.found.push(child),
                _ if midi => out.skip(
                    root,
                    &child,
                    format!("not a regular file ({})", kind.name()),
                ),
                _ => {}
            }
        }
        if subfolders.is_empty() {
            return out;
        }
        use rayon::prelude::*;
        let walk = |(_, sub): &(usize, PathBuf)| match self.folders.list(sub) {
            Ok(listing) => self.folder(sub.clone(), &listing),
            Err(e) => {
                let mut part = Found::default();
                part.skip(self.root, sub, format!("cannot list the folder: {e}"));
                part
            }
        };
        // A few folders are walked here: starting the thread pool costs more
        // than it saves (the demo corpus has three).
        let parts: Vec<Found> = if subfolders.len() < PARALLEL_FOLDERS {
            subfolders.iter().map(walk).collect()
        } else {
            subfolders.par_iter().map(walk).collect()
        };
        let files = std::mem::take(&mut out.found);
        let mut files = files.into_iter();
        let mut taken = 0;
        for ((at, _), part) in subfolders.iter().zip(parts) {
            out.found.extend(files.by_ref().take(at - taken));
            taken = *at;
            out.found.extend(part.found);
            out.skipped.extend(part.skipped);
        }
        out.found.extend(files);
        out
    }
}

/// `dir.join(name)` allocated once at its final size (`join` grows the
/// buffer after copying `dir`: 120,000 reallocations on a 60,000-file
/// no-op).
pub fn joined(dir: &Path, name: &Path) -> PathBuf {
    let mut path = PathBuf::with_capacity(dir.as_os_str().len() + 1 + name.as_os_str().len());
    path.push(dir);
    path.push(name);
    path
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
    EntryKind::of(kind).name()
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
    fn midi_files_are_read_with_their_paths_and_errors_name_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("nes")).unwrap();
        fs::write(dir.path().join("nes/b.mid"), b"MThd b").unwrap();
        fs::write(dir.path().join("a.MID"), b"MThd a").unwrap();
        fs::write(dir.path().join("notes.txt"), b"not MIDI").unwrap();
        let files = read_midi_files(dir.path()).unwrap();
        assert_eq!(
            files,
            vec![
                (PathBuf::from("a.MID"), b"MThd a".to_vec()),
                (PathBuf::from("nes/b.mid"), b"MThd b".to_vec()),
            ]
        );
        let gone = dir.path().join("gone");
        let err = read_midi_files(&gone).unwrap_err().to_string();
        assert!(
            err.contains("listing MIDI files in") && err.contains("gone"),
            "{err}"
        );
    }

    #[test]
    fn midi_names_are_those_path_extension_finds() {
        for name in [
            "a.mid",
            "a.MID",
            "b/c.midi",
            "x.kar",
            "y.Rmi",
            ".mid",
            "a.mid.txt",
            "mid",
            "a.",
            "a..mid",
            "dir.mid/x",
            "é.mid",
            "a.mi",
        ] {
            let path = Path::new(name);
            let by_path = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| MIDI_EXTENSIONS.iter().any(|m| e.eq_ignore_ascii_case(m)));
            assert_eq!(is_midi_name(path), by_path, "{name}");
        }
    }

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
