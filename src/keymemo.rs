//! Remembers each stage's key and result by the stamps of what it was
//! computed from, so that a no-op over a corpus of thousands of files does
//! not rebuild a key manifest naming each of them (and read back a record
//! of the same size) only to arrive at the key it had last time: ninja's
//! and Bazel's trick of a compact log read in one go.
//!
//! The digest covers everything the key manifest is made of: the kind and
//! its version, the parameters, the dependencies' outputs, the external
//! values, the names files take in the key, and each file's stamp (size,
//! mtime, ctime, inode). A file's content is taken as known from its stamp
//! exactly as the stat cache takes it; a stage with a folder among its
//! external inputs is never remembered (a folder's stamp does not cover
//! its files). A remembered result is used only while the record it was
//! read from has the stamp it had then (a rerun rewrites the record).
//!
//! `cache/keymemo.bin`, read in one go at the start of a build and written
//! (atomically) at its end only when an entry was added:
//!
//! ```text
//! b"VGMKEYM1"  u64 count
//! count x { [u8; 32] digest, [u8; 32] key, [u8; 32] output,
//!           u64 record size, i64 record mtime_ns, u64 record inode }
//! [u8; 32]     blake3 of everything above
//! ```
//!
//! Little-endian; a file that is short, long or fails its checksum is
//! ignored (the memo is only an accelerator). At most [`KEEP`] entries are
//! kept, the most recent.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustc_hash::FxHashMap;

const MAGIC: &[u8; 8] = b"VGMKEYM1";
const ENTRY: usize = 32 * 3 + 8 * 3;
/// Entries kept: one per stage with external files per variant built.
pub const KEEP: usize = 4096;

/// A remembered result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Remembered {
    pub key: [u8; 32],
    pub output: [u8; 32],
    record: RecordStamp,
}

/// The action record's file as it was when the result was remembered.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RecordStamp {
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

impl RecordStamp {
    fn of(record: &Path) -> Option<RecordStamp> {
        fs::metadata(record)
            .ok()
            .map(|meta| RecordStamp::of_meta(&meta))
    }

    fn of_meta(meta: &fs::Metadata) -> RecordStamp {
        RecordStamp {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ino: meta.ino(),
        }
    }
}

pub struct KeyMemo {
    path: PathBuf,
    /// In file order (oldest first), then what this build added.
    entries: Mutex<(FxHashMap<[u8; 32], Remembered>, Vec<[u8; 32]>, bool)>,
}

impl KeyMemo {
    /// Loads `path`; missing or damaged, the memo starts empty.
    pub fn load(path: &Path) -> KeyMemo {
        let (map, order) = fs::read(path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        KeyMemo {
            path: path.to_path_buf(),
            entries: Mutex::new((map, order, false)),
        }
    }

    /// The result remembered for `digest`, if its record (at
    /// `record_path(key)`) is still the file it was read from.
    pub fn get(
        &self,
        digest: &[u8; 32],
        record_path: impl Fn(&str) -> PathBuf,
    ) -> Option<Remembered> {
        let found = self.entries.lock().unwrap().0.get(digest).copied()?;
        let record = record_path(&hex(&found.key));
        (RecordStamp::of(&record) == Some(found.record)).then_some(found)
    }

    /// Remembers `key` and `output` for `digest`, as read from the record
    /// whose file had metadata `record` (taken from the descriptor read).
    pub fn remember(&self, digest: [u8; 32], key: &str, output: &str, record: &fs::Metadata) {
        let (Some(key), Some(output)) = (hex32(key), hex32(output)) else {
            return;
        };
        let record = RecordStamp::of_meta(record);
        let mut entries = self.entries.lock().unwrap();
        let entry = Remembered {
            key,
            output,
            record,
        };
        if entries.0.insert(digest, entry) != Some(entry) {
            entries.1.retain(|d| *d != digest);
            entries.1.push(digest);
            entries.2 = true;
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().0.len()
    }

    /// Writes the memo when an entry was added, keeping the newest [`KEEP`].
    pub fn save(&self) -> io::Result<()> {
        let mut entries = self.entries.lock().unwrap();
        if !entries.2 {
            return Ok(());
        }
        let (map, order, changed) = &mut *entries;
        let drop = order.len().saturating_sub(KEEP);
        for digest in order.drain(..drop) {
            map.remove(&digest);
        }
        let mut out = Vec::with_capacity(16 + order.len() * ENTRY + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(order.len() as u64).to_le_bytes());
        for digest in order.iter() {
            let e = &map[digest];
            out.extend_from_slice(digest);
            out.extend_from_slice(&e.key);
            out.extend_from_slice(&e.output);
            out.extend_from_slice(&e.record.size.to_le_bytes());
            out.extend_from_slice(&e.record.mtime_ns.to_le_bytes());
            out.extend_from_slice(&e.record.ino.to_le_bytes());
        }
        let check = blake3::hash(&out);
        out.extend_from_slice(check.as_bytes());
        crate::fsutil::write_atomic(&self.path, &out)?;
        *changed = false;
        Ok(())
    }
}

/// Remembered hashes are kept as bytes; this is their hex text.
pub fn hex(bytes: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*bytes).to_hex().to_string()
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    blake3::Hash::from_hex(text).ok().map(|h| *h.as_bytes())
}

type Decoded = (FxHashMap<[u8; 32], Remembered>, Vec<[u8; 32]>);

fn decode(bytes: &[u8]) -> Option<Decoded> {
    let (body, check) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != check {
        return None;
    }
    let rest = body.strip_prefix(MAGIC)?;
    let count = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
    let rest = &rest[8..];
    if rest.len() != count.checked_mul(ENTRY)? {
        return None;
    }
    let mut map = FxHashMap::default();
    let mut order = Vec::with_capacity(count);
    for e in rest.chunks_exact(ENTRY) {
        let take32 = |at: usize| -> [u8; 32] { e[at..at + 32].try_into().unwrap() };
        let u64_at = |at: usize| u64::from_le_bytes(e[at..at + 8].try_into().unwrap());
        let digest = take32(0);
        map.insert(
            digest,
            Remembered {
                key: take32(32),
                output: take32(64),
                record: RecordStamp {
                    size: u64_at(96),
                    mtime_ns: u64_at(104) as i64,
                    ino: u64_at(112),
                },
            },
        );
        order.push(digest);
    }
    Some((map, order))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_hex(text: &str) -> String {
        blake3::hash(text.as_bytes()).to_hex().to_string()
    }

    #[test]
    fn remembers_across_loads_while_the_record_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.json");
        fs::write(&record, "first").unwrap();
        let path = dir.path().join("keymemo.bin");
        let memo = KeyMemo::load(&path);
        let digest = *blake3::hash(b"inputs").as_bytes();
        let at = |_: &str| record.clone();
        assert!(memo.get(&digest, at).is_none());
        memo.remember(
            digest,
            &hash_hex("key"),
            &hash_hex("out"),
            &fs::metadata(&record).unwrap(),
        );
        memo.save().unwrap();
        let again = KeyMemo::load(&path);
        let found = again.get(&digest, at).unwrap();
        assert_eq!(hex(&found.key), hash_hex("key"));
        assert_eq!(hex(&found.output), hash_hex("out"));
        // A rerun rewrites the record: the remembered output is not trusted.
        fs::write(dir.path().join("new"), "second, longer").unwrap();
        fs::rename(dir.path().join("new"), &record).unwrap();
        assert!(again.get(&digest, at).is_none());
    }

    #[test]
    fn a_damaged_file_is_ignored_and_only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.json");
        fs::write(&record, "r").unwrap();
        let path = dir.path().join("keymemo.bin");
        let memo = KeyMemo::load(&path);
        for i in 0..KEEP + 3 {
            let digest = *blake3::hash(&i.to_le_bytes()).as_bytes();
            let meta = fs::metadata(&record).unwrap();
            memo.remember(digest, &hash_hex("k"), &hash_hex("o"), &meta);
        }
        memo.save().unwrap();
        let loaded = KeyMemo::load(&path);
        let at = |_: &str| record.clone();
        let first = *blake3::hash(&0usize.to_le_bytes()).as_bytes();
        let last = *blake3::hash(&(KEEP + 2).to_le_bytes()).as_bytes();
        assert!(loaded.get(&first, at).is_none());
        assert!(loaded.get(&last, at).is_some());
        let mut bytes = fs::read(&path).unwrap();
        bytes[40] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(KeyMemo::load(&path).get(&last, at).is_none());
    }
}
