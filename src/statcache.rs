//! Remembers the content hash of files by (size, mtime, ctime, inode), so an
//! unchanged file is never hashed twice: not the corpus a source stage reads,
//! not the cached outputs verified on every build.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    hash: String,
}

/// Thread-safe; saved with [`StatCache::save`] (atomically) at the end of a build.
pub struct StatCache {
    path: PathBuf,
    entries: Mutex<HashMap<PathBuf, Entry>>,
    /// Set when an entry was added or dropped: a no-op build, which only
    /// looks up, writes (and stats) nothing at its end.
    changed: std::sync::atomic::AtomicBool,
}

impl StatCache {
    /// A cache that remembers nothing: every file is read (`vgmake verify`).
    pub fn none() -> StatCache {
        StatCache {
            path: PathBuf::new(),
            entries: Mutex::new(HashMap::new()),
            changed: Default::default(),
        }
    }

    /// Loads the cache file; a missing or unreadable one starts empty (it is
    /// only an accelerator).
    pub fn load(path: &Path) -> StatCache {
        let entries = fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Vec<(PathBuf, Entry)>>(&bytes).ok())
            .map(|list| list.into_iter().collect())
            .unwrap_or_default();
        StatCache {
            path: path.to_path_buf(),
            entries: Mutex::new(entries),
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
        if let Some(entry) = self.entries.lock().unwrap().get(path) {
            if entry.stamp == stamp {
                if let Ok(hash) = blake3::Hash::from_hex(&entry.hash) {
                    return Ok(hash);
                }
            }
        }
        let hash = crate::fsutil::hash_file(path)?;
        // Re-stat: a file that changed while it was read is not remembered.
        if fs::metadata(path).map(|m| Stamp::of(&m)).ok() == Some(stamp) {
            self.entries.lock().unwrap().insert(
                path.to_path_buf(),
                Entry {
                    stamp,
                    hash: hash.to_hex().to_string(),
                },
            );
            self.mark_changed();
        }
        Ok(hash)
    }

    /// Records `hash` for the file at `path` as it is now (a file just moved
    /// into place whose contents were hashed under another name).
    pub fn remember(&self, path: &Path, hash: &blake3::Hash) -> io::Result<()> {
        let stamp = Stamp::of(&fs::metadata(path)?);
        self.entries.lock().unwrap().insert(
            path.to_path_buf(),
            Entry {
                stamp,
                hash: hash.to_hex().to_string(),
            },
        );
        self.mark_changed();
        Ok(())
    }

    fn mark_changed(&self) {
        self.changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets every path under `prefix` (a removed cache entry).
    pub fn forget_under(&self, prefix: &Path) {
        self.entries
            .lock()
            .unwrap()
            .retain(|p, _| !p.starts_with(prefix));
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
        let mut list: Vec<(PathBuf, Entry)> = {
            let mut entries = self.entries.lock().unwrap();
            entries.retain(|p, _| p.exists());
            entries
                .iter()
                .map(|(p, e)| {
                    (
                        p.clone(),
                        Entry {
                            stamp: e.stamp,
                            hash: e.hash.clone(),
                        },
                    )
                })
                .collect()
        };
        list.sort_by(|a, b| a.0.cmp(&b.0));
        crate::fsutil::write_atomic(&self.path, &serde_json::to_vec(&list)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rehashes_only_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.mid");
        fs::write(&file, b"one").unwrap();
        let cache = StatCache::load(&dir.path().join("stat.json"));
        let h1 = cache.hash_file(&file).unwrap();
        assert_eq!(h1, blake3::hash(b"one"));
        fs::write(&file, b"two").unwrap();
        assert_eq!(cache.hash_file(&file).unwrap(), blake3::hash(b"two"));
        cache.save().unwrap();
        let reloaded = StatCache::load(&dir.path().join("stat.json"));
        assert_eq!(reloaded.entries.lock().unwrap().len(), 1);
    }
}
