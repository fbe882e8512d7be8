//! The per-item memo of map stages (one downloaded file, one encoded song),
//! under `cache/memo/<kind>-v<version>/`: the engine's implementation of the
//! stage API's [`Memo`], and the listing that `gc` and `verify` walk.
//!
//! Two layouts live side by side in a kind's folder:
//!
//! - **packs** (what [`Memo::put`] writes): `packs/<stamp>.pack`, one per
//!   run that stored something, appended through one buffer (no file, rename
//!   or folder per item), and beside it `packs/<stamp>.idx`, its index,
//!   written when the run ends. A pack is the 8 bytes `VGMPACK1`, then
//!   records of `key (32 bytes) | blake3 of the payload (32) | payload length
//!   (u64 little-endian) | payload`. An index is `VGMIDX01`, the record count
//!   (u64), per record `key | hash | offset of the payload (u64) | length
//!   (u64)`, then the blake3 of everything before it. A pack whose index is
//!   missing or does not check (a run that crashed) is read by walking its
//!   record headers; a record cut short is skipped. Every payload is hashed
//!   on read: one that does not match its record is a miss, so a crash at
//!   any moment leaves no entry that reads wrong. Where one key is in
//!   several packs, the newest pack's record wins (stamps sort in time
//!   order); `gc` drops the older ones.
//! - **files** (what [`Memo::put_file`] stores: large downloads, which
//!   stages hard-link from): in a shard folder named by the key's first two
//!   hex digits, `<key>` (the payload) and `<key>.b3` (its blake3, written
//!   last). An entry without its `.b3`, or whose payload does not match it,
//!   is a miss and is removed. Caches written before packs hold every entry
//!   this way; they are still read.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use vgmake_api::Memo;

use crate::fsutil::hash_file;

const PACK_MAGIC: &[u8; 8] = b"VGMPACK1";
const INDEX_MAGIC: &[u8; 8] = b"VGMIDX01";
const PACKS: &str = "packs";
/// Record header: key, hash, length.
const HEADER: usize = 32 + 32 + 8;
/// An index entry: key, hash, offset, length.
const INDEX_ENTRY: usize = 32 + 32 + 8 + 8;
/// The write buffer goes to the pack when it holds this much, or when it
/// is this old (a long scrape keeps what it stored if it is killed).
const FLUSH_BYTES: usize = 1 << 20;
const FLUSH_AGE: Duration = Duration::from_secs(1);

/// One record of a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    key: [u8; 32],
    hash: [u8; 32],
    /// Where the payload starts in the pack.
    offset: u64,
    len: u64,
}

/// Where a looked-up entry lies.
#[derive(Debug, Clone, Copy)]
struct Loc {
    pack: u32,
    record: Record,
}

/// The packs on disk when the memo was first read.
struct PackIndex {
    packs: Vec<PathBuf>,
    files: Vec<OnceLock<Option<File>>>,
    entries: FxHashMap<[u8; 32], Loc>,
}

/// This run's pack.
struct PackWriter {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// Bytes already in the file.
    flushed: u64,
    records: Vec<Record>,
    lookup: FxHashMap<[u8; 32], usize>,
    last_flush: Instant,
}

impl PackWriter {
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    /// The payload of `record`, flushing first when it is still buffered.
    fn read(&mut self, record: &Record) -> io::Result<Vec<u8>> {
        if record.offset + record.len > self.flushed {
            self.flush()?;
        }
        let mut out = vec![0u8; record.len as usize];
        self.file.read_exact_at(&mut out, record.offset)?;
        Ok(out)
    }
}

/// The memo of one stage kind and version.
pub struct DirMemo {
    dir: PathBuf,
    /// Keys read or written during this run (the engine records them so that
    /// `gc` keeps the entries a kept result was built from).
    used: Mutex<BTreeSet<String>>,
    corrupt: AtomicU64,
    index: OnceLock<PackIndex>,
    writer: Mutex<Option<PackWriter>>,
    /// Whether the files layout held a shard folder when first looked at,
    /// and whether this memo stored a file since: a key that misses the
    /// packs is looked for as a file only then (a miss of a song-sized
    /// entry is otherwise one failed open per item). A shard folder made by
    /// another process meanwhile costs only speed: its entries are misses.
    had_files: OnceLock<bool>,
    put_files: AtomicBool,
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
            index: OnceLock::new(),
            writer: Mutex::new(None),
            had_files: OnceLock::new(),
            put_files: AtomicBool::new(false),
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

    /// Writes out what this run stored and its pack's index. Called when
    /// the stage's run ends (and on drop); puts after it start a new pack.
    pub fn finish(&self) -> io::Result<()> {
        let Some(mut writer) = self.writer.lock().unwrap().take() else {
            return Ok(());
        };
        writer.flush()?;
        write_index(&writer.path, &writer.records)
    }

    /// The stored bytes of `key` and their hash, verified (for pushing
    /// entries to a remote cache).
    pub fn read_verified(&self, key: &blake3::Hash) -> Option<(blake3::Hash, Vec<u8>)> {
        let bytes = self.lookup(key)?;
        Some((blake3::hash(&bytes), bytes))
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

    fn index(&self) -> &PackIndex {
        self.index.get_or_init(|| {
            let packs = pack_files(&self.dir.join(PACKS));
            let mut entries = FxHashMap::default();
            for (i, pack) in packs.iter().enumerate() {
                for record in pack_records(pack) {
                    entries.insert(
                        record.key,
                        Loc {
                            pack: i as u32,
                            record,
                        },
                    );
                }
            }
            PackIndex {
                files: packs.iter().map(|_| OnceLock::new()).collect(),
                packs,
                entries,
            }
        })
    }

    /// The payload of `key` from a pack (this run's first), verified.
    fn from_packs(&self, key: &blake3::Hash) -> Option<Vec<u8>> {
        let k = key.as_bytes();
        {
            let mut guard = self.writer.lock().unwrap();
            if let Some(writer) = guard.as_mut()
                && let Some(&i) = writer.lookup.get(k)
            {
                let record = writer.records[i];
                let bytes = writer.read(&record).ok();
                drop(guard);
                return self.checked(bytes, &record);
            }
        }
        let index = self.index();
        let loc = index.entries.get(k)?;
        let file = index.files[loc.pack as usize]
            .get_or_init(|| File::open(&index.packs[loc.pack as usize]).ok())
            .as_ref();
        let bytes = file.and_then(|f| {
            let mut out = vec![0u8; usize::try_from(loc.record.len).ok()?];
            f.read_exact_at(&mut out, loc.record.offset).ok()?;
            Some(out)
        });
        self.checked(bytes, &loc.record)
    }

    fn checked(&self, bytes: Option<Vec<u8>>, record: &Record) -> Option<Vec<u8>> {
        match bytes {
            Some(b) if blake3::hash(&b).as_bytes() == &record.hash => Some(b),
            _ => {
                // A newer put supersedes it; gc drops it.
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Checks a file entry; returns the payload path when it verifies.
    fn verified_file(&self, key: &blake3::Hash) -> Option<PathBuf> {
        let payload = self.payload_path(key);
        let sum = payload.with_extension("b3");
        let expected = fs::read_to_string(&sum).ok()?;
        let actual = hash_file(&payload).ok();
        if actual.as_ref().map(|h| h.to_hex().to_string()) == Some(expected.trim().to_string()) {
            Some(payload)
        } else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            let _ = fs::remove_file(&sum);
            let _ = fs::remove_file(&payload);
            None
        }
    }

    /// The payload of `key` from either layout, verified (not noted).
    fn lookup(&self, key: &blake3::Hash) -> Option<Vec<u8>> {
        self.from_packs(key).or_else(|| {
            if !self.may_hold_files() {
                return None;
            }
            fs::read(self.verified_file(key)?).ok()
        })
    }

    /// Whether the files layout may hold entries (see `had_files`).
    fn may_hold_files(&self) -> bool {
        self.put_files.load(Ordering::Relaxed)
            || *self
                .had_files
                .get_or_init(|| match fs::read_dir(&self.dir) {
                    Ok(entries) => entries
                        .flatten()
                        .any(|e| e.file_name() != PACKS && e.file_type().is_ok_and(|t| t.is_dir())),
                    Err(_) => true,
                })
    }

    fn commit(&self, key: &blake3::Hash, tmp: &Path, hash: blake3::Hash) -> io::Result<()> {
        self.put_files.store(true, Ordering::Relaxed);
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

    fn new_writer(&self) -> io::Result<PackWriter> {
        let dir = self.dir.join(PACKS);
        fs::create_dir_all(&dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // Random per process (std seeds it from the OS): Slurm jobs on
        // other hosts may share the pid and the time.
        let salt = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed),
        );
        let path = dir.join(format!(
            "{stamp:024}-{}-{:08x}.pack",
            std::process::id(),
            salt as u32
        ));
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(PACK_MAGIC)?;
        Ok(PackWriter {
            path,
            file,
            buf: Vec::with_capacity(64 << 10),
            flushed: PACK_MAGIC.len() as u64,
            records: Vec::new(),
            lookup: FxHashMap::default(),
            last_flush: Instant::now(),
        })
    }
}

impl Drop for DirMemo {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Memo for DirMemo {
    fn get(&self, key: &blake3::Hash) -> Option<Vec<u8>> {
        let bytes = self.lookup(key)?;
        self.note(key);
        Some(bytes)
    }

    fn put(&self, key: &blake3::Hash, value: &[u8]) -> io::Result<()> {
        let hash = blake3::hash(value);
        let mut guard = self.writer.lock().unwrap();
        if guard.is_none() {
            *guard = Some(self.new_writer()?);
        }
        let writer = guard.as_mut().unwrap();
        let record = Record {
            key: *key.as_bytes(),
            hash: *hash.as_bytes(),
            offset: writer.flushed + (writer.buf.len() + HEADER) as u64,
            len: value.len() as u64,
        };
        writer.buf.extend_from_slice(&record.key);
        writer.buf.extend_from_slice(&record.hash);
        writer.buf.extend_from_slice(&record.len.to_le_bytes());
        writer.buf.extend_from_slice(value);
        writer.lookup.insert(record.key, writer.records.len());
        writer.records.push(record);
        if writer.buf.len() >= FLUSH_BYTES || writer.last_flush.elapsed() >= FLUSH_AGE {
            writer.flush()?;
        }
        drop(guard);
        self.note(key);
        Ok(())
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
        if let Some(path) = self.verified_file(key) {
            self.note(key);
            return Some(path);
        }
        // Stored by `put`: give it a file of its own.
        let bytes = self.from_packs(key)?;
        let tmp = self.tmp_path(key);
        fs::write(&tmp, &bytes).ok()?;
        self.commit(key, &tmp, blake3::hash(&bytes)).ok()?;
        Some(self.payload_path(key))
    }
}

/// The packs of a kind's `packs` folder, oldest first.
fn pack_files(dir: &Path) -> Vec<PathBuf> {
    sorted_children(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect()
}

/// A pack's records: from its index when that checks, else by walking the
/// pack (a run that did not finish).
fn pack_records(pack: &Path) -> Vec<Record> {
    read_index(&pack.with_extension("idx")).unwrap_or_else(|| scan_pack(pack))
}

fn read_index(path: &Path) -> Option<Vec<Record>> {
    let bytes = fs::read(path).ok()?;
    let body_len = bytes.len().checked_sub(32)?;
    let (body, sum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != sum || body.len() < 16 || &body[..8] != INDEX_MAGIC {
        return None;
    }
    let count = u64::from_le_bytes(body[8..16].try_into().ok()?) as usize;
    let entries = &body[16..];
    if entries.len() != count.checked_mul(INDEX_ENTRY)? {
        return None;
    }
    Some(
        entries
            .chunks_exact(INDEX_ENTRY)
            .map(|e| Record {
                key: e[..32].try_into().unwrap(),
                hash: e[32..64].try_into().unwrap(),
                offset: u64::from_le_bytes(e[64..72].try_into().unwrap()),
                len: u64::from_le_bytes(e[72..80].try_into().unwrap()),
            })
            .collect(),
    )
}

/// Writes a pack's index (through a temporary file and a rename).
fn write_index(pack: &Path, records: &[Record]) -> io::Result<()> {
    let mut out = Vec::with_capacity(16 + records.len() * INDEX_ENTRY + 32);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for r in records {
        out.extend_from_slice(&r.key);
        out.extend_from_slice(&r.hash);
        out.extend_from_slice(&r.offset.to_le_bytes());
        out.extend_from_slice(&r.len.to_le_bytes());
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    let index = pack.with_extension("idx");
    let tmp = pack.with_extension("idx.tmp");
    fs::write(&tmp, &out)?;
    fs::rename(&tmp, &index)
}

/// A pack's records from their headers; stops at one cut short.
fn scan_pack(pack: &Path) -> Vec<Record> {
    let mut records = Vec::new();
    let Ok(file) = File::open(pack) else {
        return records;
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let mut reader = io::BufReader::with_capacity(64 << 10, file);
    let mut magic = [0u8; 8];
    if reader.read_exact(&mut magic).is_err() || &magic != PACK_MAGIC {
        return records;
    }
    let mut at = PACK_MAGIC.len() as u64;
    let mut header = [0u8; HEADER];
    while reader.read_exact(&mut header).is_ok() {
        let len = u64::from_le_bytes(header[64..72].try_into().unwrap());
        let offset = at + HEADER as u64;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            break;
        }
        records.push(Record {
            key: header[..32].try_into().unwrap(),
            hash: header[32..64].try_into().unwrap(),
            offset,
            len,
        });
        if reader.seek_relative(len as i64).is_err() {
            break;
        }
        at = offset + len;
    }
    records
}

/// Every memo entry of every kind under `root` (`cache/memo`).
pub fn entries(root: &Path) -> Vec<MemoEntry> {
    let mut out: Vec<MemoEntry> = Vec::new();
    for kind in sorted_children(root) {
        // The newest record of each key is live, older ones are superseded.
        let mut live: FxHashMap<[u8; 32], usize> = FxHashMap::default();
        let first = out.len();
        for pack in pack_files(&kind.join(PACKS)) {
            for record in pack_records(&pack) {
                if let Some(old) = live.insert(record.key, out.len()) {
                    out[old].superseded = true;
                }
                out.push(MemoEntry {
                    key: blake3::Hash::from_bytes(record.key).to_hex().to_string(),
                    place: Place::Pack {
                        pack: pack.clone(),
                        record,
                    },
                    superseded: false,
                });
            }
        }
        debug_assert!(
            out[first..]
                .iter()
                .all(|e| matches!(e.place, Place::Pack { .. }))
        );
        for shard in sorted_children(&kind) {
            if shard.file_name().is_some_and(|n| n == PACKS) {
                continue;
            }
            for file in sorted_children(&shard) {
                if file.extension().is_some_and(|e| e == "b3") {
                    let payload = file.with_extension("");
                    out.push(MemoEntry {
                        key: payload
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        place: Place::File { sum: file, payload },
                        superseded: false,
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

#[derive(Debug, Clone)]
enum Place {
    File { sum: PathBuf, payload: PathBuf },
    Pack { pack: PathBuf, record: Record },
}

/// One stored entry, as `gc` and `verify` see it.
#[derive(Debug, Clone)]
pub struct MemoEntry {
    key: String,
    place: Place,
    superseded: bool,
}

impl MemoEntry {
    /// The entry's key (hex), as stage records list it.
    pub fn key(&self) -> String {
        self.key.clone()
    }
    /// True for a pack record that a newer record of the same key replaces
    /// (never read; `gc` drops it).
    pub fn superseded(&self) -> bool {
        self.superseded
    }
    pub fn payload_bytes(&self) -> u64 {
        match &self.place {
            Place::File { payload, .. } => fs::metadata(payload).map_or(0, |m| m.len()),
            Place::Pack { record, .. } => record.len,
        }
    }
    /// Where it is stored, for messages.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::File { payload, .. } => payload.display().to_string(),
            Place::Pack { pack, record } => {
                format!(
                    "{} (key {}, at byte {})",
                    pack.display(),
                    self.key,
                    record.offset
                )
            }
        }
    }
    /// Re-reads the payload and checks it against its recorded hash.
    pub fn verify(&self) -> bool {
        match &self.place {
            Place::File { sum, payload } => {
                let expected = fs::read_to_string(sum).unwrap_or_default();
                hash_file(payload).is_ok_and(|h| h.to_hex().as_str() == expected.trim())
            }
            Place::Pack { pack, record } => {
                let Ok(len) = usize::try_from(record.len) else {
                    return false;
                };
                let mut bytes = vec![0u8; len];
                File::open(pack)
                    .and_then(|f| f.read_exact_at(&mut bytes, record.offset))
                    .is_ok_and(|()| blake3::hash(&bytes).as_bytes() == &record.hash)
            }
        }
    }
}

/// Removes entries: a file entry's record first (a half-removed entry reads
/// as absent); a pack losing all its records is deleted, one keeping some is
/// rewritten with only those (its index removed first, so a crash leaves a
/// pack that is read by walking it).
pub fn remove(entries: &[MemoEntry]) {
    let mut by_pack: BTreeMap<&Path, Vec<Record>> = BTreeMap::new();
    for entry in entries {
        match &entry.place {
            Place::File { sum, payload } => {
                let _ = fs::remove_file(sum);
                let _ = fs::remove_file(payload);
            }
            Place::Pack { pack, record } => by_pack.entry(pack).or_default().push(*record),
        }
    }
    for (pack, dropped) in by_pack {
        let kept: Vec<Record> = pack_records(pack)
            .into_iter()
            .filter(|r| !dropped.iter().any(|d| d.offset == r.offset))
            .collect();
        let index = pack.with_extension("idx");
        if kept.is_empty() {
            let _ = fs::remove_file(&index);
            let _ = fs::remove_file(pack);
            continue;
        }
        let _ = rewrite_pack(pack, &index, &kept);
    }
}

fn rewrite_pack(pack: &Path, index: &Path, kept: &[Record]) -> io::Result<()> {
    let tmp = pack.with_extension("pack.tmp");
    let source = File::open(pack)?;
    let mut out = io::BufWriter::new(File::create(&tmp)?);
    out.write_all(PACK_MAGIC)?;
    let mut at = PACK_MAGIC.len() as u64;
    let mut records = Vec::with_capacity(kept.len());
    let mut payload = Vec::new();
    for r in kept {
        payload.resize(usize::try_from(r.len).map_err(io::Error::other)?, 0);
        source.read_exact_at(&mut payload, r.offset)?;
        out.write_all(&r.key)?;
        out.write_all(&r.hash)?;
        out.write_all(&r.len.to_le_bytes())?;
        out.write_all(&payload)?;
        records.push(Record {
            offset: at + HEADER as u64,
            ..*r
        });
        at += (HEADER + payload.len()) as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?;
    fs::remove_file(index).or_else(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    fs::rename(&tmp, pack)?;
    write_index(pack, &records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_corruption_is_a_miss() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("encode-v1");
        let memo = DirMemo::new(&dir).unwrap();
        let key = blake3::hash(b"song-1");
        assert_eq!(memo.get(&key), None);
        memo.put(&key, b"tokens").unwrap();
        // Read back within the run (still buffered), then from the pack.
        assert_eq!(memo.get(&key).as_deref(), Some(&b"tokens"[..]));
        memo.finish().unwrap();
        let memo = DirMemo::new(&dir).unwrap();
        assert_eq!(memo.get(&key).as_deref(), Some(&b"tokens"[..]));
        // Corrupt the payload in the pack: the entry reads as absent.
        let pack = pack_files(&dir.join(PACKS)).remove(0);
        let mut bytes = fs::read(&pack).unwrap();
        *bytes.last_mut().unwrap() = b'z';
        fs::write(&pack, &bytes).unwrap();
        let memo = DirMemo::new(&dir).unwrap();
        assert_eq!(memo.get(&key), None);
        assert_eq!(memo.corrupt_entries(), 1);
        // A new put supersedes it; gc's listing marks the old one.
        memo.put(&key, b"tokens").unwrap();
        drop(memo);
        let memo = DirMemo::new(&dir).unwrap();
        assert_eq!(memo.get(&key).as_deref(), Some(&b"tokens"[..]));
        let listed = entries(root.path());
        let mine: Vec<_> = listed
            .iter()
            .filter(|e| e.key() == key.to_hex().as_str())
            .collect();
        assert_eq!(mine.len(), 2);
        assert!(mine[0].superseded() && !mine[0].verify());
        assert!(!mine[1].superseded() && mine[1].verify());
    }

    #[test]
    fn a_pack_without_its_index_is_walked_and_a_torn_record_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let memo = DirMemo::new(dir.path()).unwrap();
        let keys: Vec<_> = (0..3).map(|i: u8| blake3::hash(&[i])).collect();
        for (i, key) in keys.iter().enumerate() {
            memo.put(key, &vec![i as u8; 1000 * (i + 1)]).unwrap();
        }
        memo.finish().unwrap();
        let pack = pack_files(&dir.path().join(PACKS)).remove(0);
        // A crash: no index, the last record cut short.
        fs::remove_file(pack.with_extension("idx")).unwrap();
        let len = fs::metadata(&pack).unwrap().len();
        File::options()
            .write(true)
            .open(&pack)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let memo = DirMemo::new(dir.path()).unwrap();
        assert_eq!(memo.get(&keys[0]), Some(vec![0u8; 1000]));
        assert_eq!(memo.get(&keys[1]), Some(vec![1u8; 2000]));
        assert_eq!(memo.get(&keys[2]), None);
    }

    #[test]
    fn gc_removal_rewrites_a_pack_with_what_it_keeps() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("encode-v1");
        let memo = DirMemo::new(&dir).unwrap();
        let keys: Vec<_> = (0..4).map(|i: u8| blake3::hash(&[i])).collect();
        for (i, key) in keys.iter().enumerate() {
            memo.put(key, &[i as u8; 100]).unwrap();
        }
        drop(memo);
        let listed = entries(root.path());
        assert_eq!(listed.len(), 4);
        assert!(listed.iter().all(MemoEntry::verify));
        let drop_them: Vec<MemoEntry> = listed
            .into_iter()
            .filter(|e| {
                e.key() == keys[1].to_hex().as_str() || e.key() == keys[3].to_hex().as_str()
            })
            .collect();
        remove(&drop_them);
        let listed = entries(root.path());
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(MemoEntry::verify));
        let memo = DirMemo::new(&dir).unwrap();
        assert_eq!(memo.get(&keys[0]), Some(vec![0u8; 100]));
        assert_eq!(memo.get(&keys[1]), None);
        assert_eq!(memo.get(&keys[2]), Some(vec![2u8; 100]));
        // Dropping the rest deletes the pack and its index.
        remove(&entries(root.path()));
        assert!(pack_files(&dir.join(PACKS)).is_empty());
        assert_eq!(fs::read_dir(dir.join(PACKS)).unwrap().count(), 0);
    }

    #[test]
    fn put_file_moves_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let memo = DirMemo::new(dir.path().join("memo")).unwrap();
        let src = dir.path().join("download.part");
        fs::write(&src, b"MThd...").unwrap();
        let key = blake3::hash(b"url");
        // A memo that has looked (and found no files) still sees the file
        // it stores, and so does the next run's.
        assert_eq!(memo.get(&key), None);
        memo.put_file(&key, &src).unwrap();
        assert!(!src.exists());
        assert_eq!(memo.get(&key).as_deref(), Some(&b"MThd..."[..]));
        assert_eq!(
            DirMemo::new(dir.path().join("memo"))
                .unwrap()
                .get(&key)
                .as_deref(),
            Some(&b"MThd..."[..])
        );
        let stored = memo.path(&key).unwrap();
        assert_eq!(fs::read(stored).unwrap(), b"MThd...");
        assert_eq!(memo.used_keys(), vec![key.to_hex().to_string()]);
        let listed = entries(dir.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key(), key.to_hex().as_str());
        assert!(listed[0].verify());
        let Place::File { payload, .. } = &listed[0].place else {
            panic!("a file entry")
        };
        fs::write(payload, b"MThe...").unwrap();
        assert!(!listed[0].verify());
        // A put entry asked for by path gets a file of its own.
        let other = blake3::hash(b"doc");
        memo.put(&other, b"<html>").unwrap();
        assert_eq!(fs::read(memo.path(&other).unwrap()).unwrap(), b"<html>");
    }
}
