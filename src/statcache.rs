//! Remembers the content hash of files by (size, mtime, ctime, inode), so an
//! unchanged file is never hashed twice: not the corpus a source stage reads,
//! not the cached outputs verified on every build.
//!
//! `cache/statcache.bin`, read in one go at the start of a command and
//! written (atomically) only when an entry changed:
//!
//! ```text
//! b"VGMSTAT1"  u64 count
//! count x { u32 path length, path bytes, u64 size, i64 mtime_ns,
//!           i64 ctime_ns, u64 inode, [u8; 32] blake3 }
//! [u8; 32]     blake3 of everything above
//! ```
//!
//! All integers little-endian. A file that is short, long or fails its
//! checksum is ignored (the cache is only an accelerator: every file is
//! then hashed again). Entries are keyed by the path's bytes with FxHash:
//! `Path`'s own `Hash` and `Eq` walk components, which cost more than the
//! lookups they serve on a no-op over 6,000 files.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use rustc_hash::FxHashMap;

const MAGIC: &[u8; 8] = b"VGMSTAT1";

#[derive(Debug, Clone, Copy, PartialEq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
        }
    }
}

#[derive(Clone, Copy)]
struct Entry {
    stamp: Stamp,
    hash: [u8; 32],
}

/// Thread-safe; saved with [`StatCache::save`] (atomically) at the end of a build.
pub struct StatCache {
    path: PathBuf,
    entries: RwLock<FxHashMap<Box<[u8]>, Entry>>,
    /// Set when an entry was added or dropped: a no-op build, which only
    /// looks up, writes (and stats) nothing at its end.
    changed: std::sync::atomic::AtomicBool,
}

fn key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

impl StatCache {
    /// A cache that remembers nothing: every file is read (`vgmake verify`).
    pub fn none() -> StatCache {
        StatCache {
            path: PathBuf::new(),
            entries: RwLock::new(FxHashMap::default()),
            changed: Default::default(),
        }
    }

    /// Loads the cache file; a missing, unreadable or damaged one starts
    /// empty (it is only an accelerator).
    pub fn load(path: &Path) -> StatCache {
        let entries = fs::read(path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        StatCache {
            path: path.to_path_buf(),
            entries: RwLock::new(entries),
            changed: Default::default(),
        }
    }

    #[cfg(test)]
    fn hash_file(&self, path: &Path) -> io::Result<blake3::Hash> {
        let meta = fs::metadata(path)?;
        self.hash_with_meta(path, &meta)
    }

    /// The blake3 hash of the file's contents; computed only when its stamp
    /// changed since it was last seen.
    pub fn hash_with_meta(&self, path: &Path, meta: &fs::Metadata) -> io::Result<blake3::Hash> {
        let stamp = Stamp::of(meta);
        if let Some(entry) = self.entries.read().unwrap().get(key(path))
            && entry.stamp == stamp
        {
            return Ok(blake3::Hash::from_bytes(entry.hash));
        }
        let hash = crate::fsutil::hash_file(path)?;
        // Re-stat: a file that changed while it was read is not remembered.
        if fs::metadata(path).map(|m| Stamp::of(&m)).ok() == Some(stamp) {
            self.insert(path, stamp, &hash);
        }
        Ok(hash)
    }

    /// Records `hash` for the file at `path` as it is now (a file just moved
    /// into place whose contents were hashed under another name).
    pub fn remember(&self, path: &Path, hash: &blake3::Hash) -> io::Result<()> {
        let stamp = Stamp::of(&fs::metadata(path)?);
        self.insert(path, stamp, hash);
        Ok(())
    }

    fn insert(&self, path: &Path, stamp: Stamp, hash: &blake3::Hash) {
        self.entries.write().unwrap().insert(
            key(path).into(),
            Entry {
                stamp,
                hash: *hash.as_bytes(),
            },
        );
        self.mark_changed();
    }

    fn mark_changed(&self) {
        self.changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets every path under `prefix` (a removed cache entry).
    pub fn forget_under(&self, prefix: &Path) {
        self.entries
            .write()
            .unwrap()
            .retain(|p, _| !Path::new(std::ffi::OsStr::from_bytes(p)).starts_with(prefix));
        self.mark_changed();
    }

    /// Writes the cache, dropping entries whose files are gone; nothing
    /// when no entry changed since it was loaded.
    pub fn save(&self) -> io::Result<()> {
        if !self
            .changed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let mut list: Vec<(Box<[u8]>, Entry)> = {
            let mut entries = self.entries.write().unwrap();
            entries.retain(|p, _| Path::new(std::ffi::OsStr::from_bytes(p)).exists());
            entries.iter().map(|(p, e)| (p.clone(), *e)).collect()
        };
        list.sort_by(|a, b| a.0.cmp(&b.0));
        crate::fsutil::write_atomic(&self.path, &encode(&list))
    }
}

fn encode(list: &[(Box<[u8]>, Entry)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + list.iter().map(|(p, _)| p.len() + 68).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(list.len() as u64).to_le_bytes());
    for (path, e) in list {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        out.extend_from_slice(&e.stamp.size.to_le_bytes());
        out.extend_from_slice(&e.stamp.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.stamp.ctime_ns.to_le_bytes());
        out.extend_from_slice(&e.stamp.ino.to_le_bytes());
        out.extend_from_slice(&e.hash);
    }
    let check = blake3::hash(&out);
    out.extend_from_slice(check.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<FxHashMap<Box<[u8]>, Entry>> {
    let (body, check) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != check {
        return None;
    }
    let mut rest = body.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    let count = u64_of(take(8)?);
    let mut entries = FxHashMap::default();
    entries.reserve(count.min(1 << 24) as usize);
    for _ in 0..count {
        let len = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
        let path: Box<[u8]> = take(len)?.into();
        let fixed = take(32 + 32)?;
        let stamp = Stamp {
            size: u64_of(&fixed[0..8]),
            mtime_ns: u64_of(&fixed[8..16]) as i64,
            ctime_ns: u64_of(&fixed[16..24]) as i64,
            ino: u64_of(&fixed[24..32]),
        };
        let hash: [u8; 32] = fixed[32..].try_into().unwrap();
        entries.insert(path, Entry { stamp, hash });
    }
    rest.is_empty().then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rehashes_only_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.mid");
        fs::write(&file, b"one").unwrap();
        let cache = StatCache::load(&dir.path().join("stat.bin"));
        let h1 = cache.hash_file(&file).unwrap();
        assert_eq!(h1, blake3::hash(b"one"));
        fs::write(&file, b"two").unwrap();
        assert_eq!(cache.hash_file(&file).unwrap(), blake3::hash(b"two"));
        cache.save().unwrap();
        let reloaded = StatCache::load(&dir.path().join("stat.bin"));
        assert_eq!(reloaded.entries.read().unwrap().len(), 1);
        assert_eq!(reloaded.hash_file(&file).unwrap(), blake3::hash(b"two"));
    }

    #[test]
    fn a_damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.mid");
        fs::write(&file, b"one").unwrap();
        let path = dir.path().join("stat.bin");
        let cache = StatCache::load(&path);
        cache.hash_file(&file).unwrap();
        cache.save().unwrap();
        let good = fs::read(&path).unwrap();
        for cut in [0, 8, good.len() - 33, good.len() - 1] {
            fs::write(&path, &good[..cut]).unwrap();
            assert!(StatCache::load(&path).entries.read().unwrap().is_empty());
        }
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert!(StatCache::load(&path).entries.read().unwrap().is_empty());
    }
}
