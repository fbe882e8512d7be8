//! What enters a stage's key, and the Merkle hash of an output folder.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::statcache::{Cursor, Stamp, StatCache};

/// Everything a stage's key is computed from, stored beside each result so
/// `vgmake why` can say exactly what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyManifest {
    pub kind: String,
    pub version: u32,
    /// Every declared parameter's effective value, defaults included.
    pub params: BTreeMap<String, toml::Value>,
    /// Dependency stage name -> its output hash.
    pub deps: BTreeMap<String, String>,
    /// External inputs: corpus folders, script files, allow-listed variables.
    pub external: BTreeMap<String, String>,
}

impl KeyManifest {
    /// The stage key: blake3 over a canonical encoding (JSON of sorted maps;
    /// key order, comments and white space in pipeline.toml never reach it).
    pub fn key(&self) -> blake3::Hash {
        let canonical = serde_json::to_vec(self).expect("a manifest always serializes");
        let mut hasher = blake3::Hasher::new_derive_key("vgmake stage key v1");
        hasher.update(&canonical);
        hasher.finalize()
    }

    /// The identity of the stage's resumable state: the key without the
    /// parameters in `ignored` (a kind's `state_ignores`), so that runs that
    /// differ only in them (`steps`) share a state folder.
    pub fn state_identity(&self, ignored: &[&str]) -> blake3::Hash {
        let mut manifest = self.clone();
        manifest
            .params
            .retain(|name, _| !ignored.contains(&name.as_str()));
        let canonical = serde_json::to_vec(&manifest).expect("a manifest always serializes");
        let mut hasher = blake3::Hasher::new_derive_key("vgmake stage state v1");
        hasher.update(&canonical);
        hasher.finalize()
    }
}

/// One entry of an output folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path with `/` separators; folders end with `/`.
    pub path: String,
    pub size: u64,
    /// Content hash (empty for folders).
    pub hash: String,
}

/// The sorted list of an output folder's entries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TreeManifest {
    pub files: Vec<FileEntry>,
}

impl TreeManifest {
    /// Reads `root`, hashing files through `stats`. Symlinks and other
    /// special files are refused: outputs are plain files and folders.
    pub fn scan(root: &Path, stats: &StatCache) -> io::Result<TreeManifest> {
        let mut files = Vec::new();
        scan_into(root, "", stats, &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(TreeManifest { files })
    }

    /// The Merkle hash: blake3 over sorted (path, size, file hash) lines.
    pub fn hash(&self) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_derive_key("vgmake tree v1");
        for f in &self.files {
            hasher.update(f.path.as_bytes());
            hasher.update(b"\0");
            hasher.update(f.size.to_string().as_bytes());
            hasher.update(b"\0");
            hasher.update(f.hash.as_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize()
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// A short account of how `self` differs from `old`: "+3 files, -1 file,
    /// 2 changed".
    pub fn diff_summary(&self, old: &TreeManifest) -> String {
        let old_map: BTreeMap<&str, &str> = old
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.hash.as_str()))
            .collect();
        let new_map: BTreeMap<&str, &str> = self
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.hash.as_str()))
            .collect();
        let added = new_map.keys().filter(|p| !old_map.contains_key(*p)).count();
        let removed = old_map.keys().filter(|p| !new_map.contains_key(*p)).count();
        let changed: Vec<&str> = new_map
            .iter()
            .filter(|(p, h)| old_map.get(*p).is_some_and(|o| o != *h))
            .map(|(p, _)| *p)
            .collect();
        let mut parts = Vec::new();
        let plural = |n: usize| if n == 1 { "file" } else { "files" };
        if added > 0 {
            parts.push(format!("+{added} {}", plural(added)));
        }
        if removed > 0 {
            parts.push(format!("-{removed} {}", plural(removed)));
        }
        match changed.as_slice() {
            [] => {}
            [one] => parts.push(format!("{one} changed")),
            many => parts.push(format!("{} files changed", many.len())),
        }
        if parts.is_empty() {
            "same files".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Appends `dir`'s entries (recursively) to `out`. Subfolders are read in
/// parallel (rayon): a no-op build re-stats every file of every cached
/// output, and on a corpus of thousands of files in a few folders that is
/// most of its time; the kernel's stat scales with the cores.
fn scan_into(
    dir: &Path,
    prefix: &str,
    stats: &StatCache,
    out: &mut Vec<FileEntry>,
) -> io::Result<()> {
    let mut subdirs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().into_string().map_err(|n| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file name {n:?} in {} is not UTF-8", dir.display()),
            )
        })?;
        let rel = format!("{prefix}{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            out.push(FileEntry {
                path: format!("{rel}/"),
                size: 0,
                hash: String::new(),
            });
            subdirs.push((entry.path(), format!("{rel}/")));
        } else if kind.is_file() {
            let meta = entry.metadata()?;
            let hash = stats.hash_with_meta(&entry.path(), &meta)?;
            out.push(FileEntry {
                path: rel,
                size: meta.len(),
                hash: hash.to_hex().to_string(),
            });
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is a symlink or special file; stage outputs must be plain files",
                    entry.path().display()
                ),
            ));
        }
    }
    use rayon::prelude::*;
    let scan = |(path, prefix): &(PathBuf, String)| {
        let mut part = Vec::new();
        scan_into(path, prefix, stats, &mut part).map(|()| part)
    };
    // One subfolder (or none) is read here: even asking rayon its size
    // starts the thread pool.
    let parts: Vec<io::Result<Vec<FileEntry>>> = if subdirs.len() < 2 {
        subdirs.iter().map(scan).collect()
    } else {
        subdirs.par_iter().map(scan).collect()
    };
    for part in parts {
        out.extend(part?);
    }
    Ok(())
}

/// A content hash and, for a file, the stamp it is known by.
pub type Stamped = (Option<Stamp>, blake3::Hash);

/// [`hash_path`] of each of `paths`, in order, on every core. Each file is
/// stat'ed at its folder's descriptor (opened once per run of paths in one
/// folder): the kernel then resolves one name instead of the whole path,
/// which was most of a stat's cost on a corpus of thousands of files.
/// Each comes with the file's stamp; a folder's is `None` (its stamp does
/// not cover its files).
/// [`Reading`] says how much is read.
pub fn hash_paths(
    paths: &[PathBuf],
    stats: &StatCache,
    reading: Reading,
) -> Vec<io::Result<Stamped>> {
    use rayon::prelude::*;
    if paths.len() < PARALLEL_FROM {
        let mut hasher = RunHasher::new(stats, reading);
        return paths.iter().map(|path| hasher.hash(path)).collect();
    }
    // In place, in path order: each job keeps its folder's descriptor and
    // its stat cache cursor across its run of neighbouring paths.
    let mut out = Vec::with_capacity(paths.len());
    paths
        .par_iter()
        .with_min_len(PARALLEL_FROM / 2)
        .map_init(
            || RunHasher::new(stats, reading),
            |hasher, path| hasher.hash(path),
        )
        .collect_into_vec(&mut out);
    out
}

/// How much of the inputs [`hash_paths`] reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reading {
    /// Every file and folder, hashed where the stat cache does not know it.
    All,
    /// Only stamps, with [`UNREAD`] for every hash: what the key memo needs
    /// (a no-op that finds its keys there never opens the stat cache). A
    /// folder is `(None, UNREAD)`. [`known_hashes`] fills in the rest.
    Stamps,
}

/// The hash of an input [`Reading::Stamps`] did not look up.
pub const UNREAD: blake3::Hash = blake3::Hash::from_bytes([0; 32]);

/// The stat cache's hashes for what [`Reading::Stamps`] gathered, reading
/// no file: an input it does not know (or a folder) becomes an error of
/// kind `WouldBlock` (the stage's own thread then hashes them all).
pub fn known_hashes(paths: &[PathBuf], stamped: &mut [io::Result<Stamped>], stats: &StatCache) {
    let mut cursor = Cursor::default();
    for (path, entry) in paths.iter().zip(stamped) {
        if let Ok((stamp, hash)) = entry {
            match stamp.and_then(|stamp| stats.known_hash(path, stamp, &mut cursor)) {
                Some(known) => *hash = known,
                None => {
                    *entry = Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "not known to the stat cache",
                    ))
                }
            }
        }
    }
}

/// Below this many files one thread stats them sooner than two: starting
/// (or waking) the thread pool costs more (the demo's no-op never starts it).
pub const PARALLEL_FROM: usize = 512;

/// [`hash_paths`] on one thread, over a run of paths. The folder's
/// descriptor is kept while consecutive paths share it (they are sorted).
struct RunHasher<'a> {
    stats: &'a StatCache,
    reading: Reading,
    folder: Option<(&'a [u8], Option<rustix::fd::OwnedFd>)>,
    cursor: Cursor,
}

impl<'a> RunHasher<'a> {
    fn new(stats: &'a StatCache, reading: Reading) -> RunHasher<'a> {
        RunHasher {
            stats,
            reading,
            folder: None,
            cursor: Cursor::default(),
        }
    }

    fn hash(&mut self, path: &'a PathBuf) -> io::Result<Stamped> {
        let (stats, reading) = (self.stats, self.reading);
        let Some((dir, name)) = split_plain(path) else {
            return match reading {
                Reading::Stamps => Ok((None, UNREAD)),
                Reading::All => hash_path(path, stats).map(|h| (None, h)),
            };
        };
        if self.folder.as_ref().is_none_or(|(d, _)| *d != dir) {
            let fd = rustix::fs::open(
                Path::new(OsStr::from_bytes(dir)),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            );
            self.folder = Some((dir, fd.ok()));
        }
        let Some((_, Some(fd))) = &self.folder else {
            return match reading {
                Reading::Stamps => Ok((None, UNREAD)),
                Reading::All => hash_path(path, stats).map(|h| (None, h)),
            };
        };
        let st = rustix::fs::statat(fd, OsStr::from_bytes(name), AtFlags::empty())
            .map_err(io::Error::from)?;
        let stamp = Stamp::of_stat(&st);
        let folder = FileType::from_raw_mode(st.st_mode).is_dir();
        match reading {
            Reading::Stamps => Ok(((!folder).then_some(stamp), UNREAD)),
            Reading::All if folder => Ok((None, TreeManifest::scan(path, stats)?.hash())),
            Reading::All => Ok((
                Some(stamp),
                stats.hash_with_stamp(path, stamp, &mut self.cursor)?,
            )),
        }
    }
}

/// A path's folder and its name, when its last component is a plain name
/// (not `.`, `..` or empty: `scripts/` is named and stat'ed as a `Path`).
pub fn split_plain(path: &Path) -> Option<(&[u8], &[u8])> {
    let bytes = path.as_os_str().as_bytes();
    let slash = bytes.iter().rposition(|b| *b == b'/')?;
    let (dir, name) = (&bytes[..slash.max(1)], &bytes[slash + 1..]);
    let plain = !name.is_empty() && name != b"." && name != b"..";
    plain.then_some((dir, name))
}

/// The content hash of an external input: a file's hash, or a folder's
/// Merkle hash.
pub fn hash_path(path: &Path, stats: &StatCache) -> io::Result<blake3::Hash> {
    let meta = fs::metadata(path)?;
    if meta.is_dir() {
        Ok(TreeManifest::scan(path, stats)?.hash())
    } else {
        stats.hash_with_meta(path, &meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_hash_depends_on_contents_and_names_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let stats = StatCache::load(&a.path().join("none"));
        for (root, order) in [(a.path(), ["x", "y"]), (b.path(), ["y", "x"])] {
            fs::create_dir(root.join("sub")).unwrap();
            for name in order {
                fs::write(root.join("sub").join(name), name).unwrap();
            }
        }
        let ha = TreeManifest::scan(a.path(), &stats).unwrap();
        let hb = TreeManifest::scan(b.path(), &stats).unwrap();
        assert_eq!(ha.hash(), hb.hash());
        fs::write(b.path().join("sub/x"), "changed").unwrap();
        fs::write(b.path().join("new"), "").unwrap();
        let hb2 = TreeManifest::scan(b.path(), &stats).unwrap();
        assert_ne!(ha.hash(), hb2.hash());
        assert_eq!(hb2.diff_summary(&ha), "+1 file, sub/x changed");
    }

    #[test]
    fn only_plain_names_are_split() {
        fn split(p: &str) -> Option<(&[u8], &[u8])> {
            split_plain(Path::new(p))
        }
        assert_eq!(split("/a/b.mid"), Some((&b"/a"[..], &b"b.mid"[..])));
        assert_eq!(split("/x"), Some((&b"/"[..], &b"x"[..])));
        for odd in ["/a/scripts/", "/a/.", "/a/..", "name"] {
            assert_eq!(split(odd), None, "{odd}");
        }
    }

    #[test]
    fn key_ignores_map_insertion_order() {
        let mut p1 = BTreeMap::new();
        p1.insert("b".to_string(), toml::Value::Integer(1));
        p1.insert("a".to_string(), toml::Value::Float(0.5));
        let mut p2 = BTreeMap::new();
        p2.insert("a".to_string(), toml::Value::Float(0.5));
        p2.insert("b".to_string(), toml::Value::Integer(1));
        let m = |params| KeyManifest {
            kind: "k".into(),
            version: 1,
            params,
            deps: BTreeMap::new(),
            external: BTreeMap::new(),
        };
        assert_eq!(m(p1.clone()).key(), m(p2).key());
        let mut p3 = p1.clone();
        p3.insert("b".to_string(), toml::Value::Integer(2));
        assert_ne!(m(p1).key(), m(p3).key());
    }
}
