//! The per-item memo of map stages (one downloaded file, one encoded song),
//! under `cache/memo/<kind>-v<version>/`: the engine's implementation of the
//! stage API's [`Memo`], and the listing that `gc` and `verify` walk.
//!
//! Each entry is two files in a shard folder named by the key's first two
//! hex digits: `<key>` (the payload) and `<key>.b3` (the payload's blake3
//! hash, written last). An entry without its `.b3`, or whose payload does
//! not match it, is a miss and is removed, so a crash at any moment leaves
//! no entry that reads wrong.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use vgmake_api::Memo;

use crate::fsutil::hash_file;

/// The memo of one stage kind and version.
pub struct DirMemo {
    dir: PathBuf,
    /// Keys read or written during this run (the engine records them so that
    /// `gc` keeps the entries a kept result was built from).
    used: Mutex<BTreeSet<String>>,
    corrupt: AtomicU64,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DirMemo {
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(DirMemo {
            dir,
            used: Mutex::new(BTreeSet::new()),
            corrupt: AtomicU64::new(0),
        })
    }

    /// The keys (hex) read or written so far.
    pub fn used_keys(&self) -> Vec<String> {
        self.used.lock().unwrap().iter().cloned().collect()
    }

    /// How many entries were found corrupt and dropped.
    pub fn corrupt_entries(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    fn payload_path(&self, key: &blake3::Hash) -> PathBuf {
        let hex = key.to_hex();
        self.dir.join(&hex[..2]).join(hex.as_str())
    }

    fn note(&self, key: &blake3::Hash) {
        self.used.lock().unwrap().insert(key.to_hex().to_string());
    }

    fn tmp_path(&self, key: &blake3::Hash) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            ".tmp-{}-{}-{n}",
            std::process::id(),
            &key.to_hex()[..16]
        ))
    }

    /// Checks an entry; returns the payload path when it verifies.
    fn verified(&self, key: &blake3::Hash) -> Option<PathBuf> {
        let payload = self.payload_path(key);
        let sum = payload.with_extension("b3");
        let expected = fs::read_to_string(&sum).ok()?;
        let actual = hash_file(&payload).ok();
        if actual.as_ref().map(|h| h.to_hex().to_string()) == Some(expected.trim().to_string()) {
            self.note(key);
            Some(payload)
        } else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            let _ = fs::remove_file(&sum);
            let _ = fs::remove_file(&payload);
            None
        }
    }

    fn commit(&self, key: &blake3::Hash, tmp: &Path, hash: blake3::Hash) -> io::Result<()> {
        let payload = self.payload_path(key);
        fs::create_dir_all(payload.parent().unwrap())?;
        let sum = payload.with_extension("b3");
        // Remove the old record first: between the two renames the entry reads
        // as absent, never as a new payload with an old hash.
        let _ = fs::remove_file(&sum);
        fs::rename(tmp, &payload)?;
        let sum_tmp = self.tmp_path(key);
        fs::write(&sum_tmp, hash.to_hex().as_bytes())?;
        fs::rename(&sum_tmp, &sum)?;
        self.note(key);
        Ok(())
    }
}

impl Memo for DirMemo {
    fn get(&self, key: &blake3::Hash) -> Option<Vec<u8>> {
        let path = self.verified(key)?;
        fs::read(path).ok()
    }

    fn put(&self, key: &blake3::Hash, value: &[u8]) -> io::Result<()> {
        let tmp = self.tmp_path(key);
        fs::write(&tmp, value)?;
        self.commit(key, &tmp, blake3::hash(value))
    }

    fn put_file(&self, key: &blake3::Hash, path: &Path) -> io::Result<()> {
        let hash = hash_file(path)?;
        let tmp = self.tmp_path(key);
        if fs::rename(path, &tmp).is_err() {
            // Another file system: copy instead.
            fs::copy(path, &tmp)?;
            fs::remove_file(path)?;
        }
        self.commit(key, &tmp, hash)
    }

    fn path(&self, key: &blake3::Hash) -> Option<PathBuf> {
        self.verified(key)
    }
}

/// Every memo entry of every kind under `root` (`cache/memo`).
pub fn entries(root: &Path) -> Vec<MemoEntry> {
    let mut out = Vec::new();
    for kind in sorted_children(root) {
        for shard in sorted_children(&kind) {
            for file in sorted_children(&shard) {
                if file.extension().is_some_and(|e| e == "b3") {
                    out.push(MemoEntry {
                        sum: file.clone(),
                        payload: file.with_extension(""),
                    });
                }
            }
        }
    }
    out
}

fn sorted_children(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// One stored entry, as `gc` and `verify` see it.
pub struct MemoEntry {
    sum: PathBuf,
    pub payload: PathBuf,
}

impl MemoEntry {
    /// The entry's key (hex), as stage records list it.
    pub fn key(&self) -> String {
        self.payload
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
    pub fn payload_bytes(&self) -> u64 {
        fs::metadata(&self.payload).map_or(0, |m| m.len())
    }
    /// Re-reads the payload and checks it against its recorded hash.
    pub fn verify(&self) -> bool {
        let expected = fs::read_to_string(&self.sum).unwrap_or_default();
        hash_file(&self.payload).is_ok_and(|h| h.to_hex().as_str() == expected.trim())
    }
    /// Removes it, its record first: a half-removed entry reads as absent.
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.sum);
        let _ = fs::remove_file(&self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_corruption_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let memo = DirMemo::new(dir.path()).unwrap();
        let key = blake3::hash(b"song-1");
        assert_eq!(memo.get(&key), None);
        memo.put(&key, b"tokens").unwrap();
        assert_eq!(memo.get(&key).as_deref(), Some(&b"tokens"[..]));
        // Corrupt the payload: the entry reads as absent and is dropped.
        fs::write(memo.payload_path(&key), b"tokenz").unwrap();
        assert_eq!(memo.get(&key), None);
        assert_eq!(memo.corrupt_entries(), 1);
        assert!(!memo.payload_path(&key).exists());
    }

    #[test]
    fn put_file_moves_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let memo = DirMemo::new(dir.path().join("memo")).unwrap();
        let src = dir.path().join("download.part");
        fs::write(&src, b"MThd...").unwrap();
        let key = blake3::hash(b"url");
        memo.put_file(&key, &src).unwrap();
        assert!(!src.exists());
        let stored = memo.path(&key).unwrap();
        assert_eq!(fs::read(stored).unwrap(), b"MThd...");
        assert_eq!(memo.used_keys(), vec![key.to_hex().to_string()]);
        let listed = entries(dir.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key(), key.to_hex().as_str());
        assert!(listed[0].verify());
        fs::write(&listed[0].payload, b"MThe...").unwrap();
        assert!(!listed[0].verify());
    }
}
