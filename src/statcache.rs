//! Remembers the content hash of files by (size, mtime, ctime, inode), so an
//! unchanged file is never hashed twice: not the corpus a source stage reads,
//! not the cached outputs verified on every build.
//!
//! `cache/statcache.bin`, read in one go at the start of a command and
//! written (atomically) only when an entry changed:
//!
//! ```text
//! b"VGMSTAT2"  u64 count
//! count x { u32 path length, path bytes, u64 size, i64 mtime_ns,
//!           i64 ctime_ns, u64 inode, [u8; 32] blake3 }
//! count x u32  the offset of each entry, in entry order
//! u64          XXH3-64 of everything above
//! ```
//!
//! All integers little-endian, entries sorted by their path's bytes. A file
//! that is short, long or fails its checksum is ignored (the cache is only
//! an accelerator: every file is then hashed again). The checksum guards
//! against a damaged disk, not an attacker (who could write the file
//! anyway): XXH3 checks 18 MB (60,000 corpus files) in a millisecond, where
//! blake3 took four. An entry is found by
//! binary search over the offsets, in place: the file is its own index, so
//! loading it builds nothing (a hash index of 120,000 entries cost a no-op
//! over 60,000 files milliseconds). Paths are compared as bytes: `Path`'s
//! own `Eq` walks components.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

use rustc_hash::FxHashMap;

const MAGIC: &[u8; 8] = b"VGMSTAT2";
/// Size, mtime, ctime, inode, hash: the fixed part after an entry's path.
const FIXED: usize = 8 * 4 + 32;

/// What a file's content is known by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
}

impl Stamp {
    /// Appends the stamp to `digest` (the key memo's input).
    pub fn digest_into(&self, digest: &mut Vec<u8>) {
        digest.extend_from_slice(&self.size.to_le_bytes());
        digest.extend_from_slice(&self.mtime_ns.to_le_bytes());
        digest.extend_from_slice(&self.ctime_ns.to_le_bytes());
        digest.extend_from_slice(&self.ino.to_le_bytes());
    }

    /// Size, mtime, ctime, inode (a file format's fields).
    pub fn parts(&self) -> (u64, i64, i64, u64) {
        (self.size, self.mtime_ns, self.ctime_ns, self.ino)
    }

    pub fn from_parts(size: u64, mtime_ns: i64, ctime_ns: i64, ino: u64) -> Stamp {
        Stamp {
            size,
            mtime_ns,
            ctime_ns,
            ino,
        }
    }

    pub fn ctime_ns(&self) -> i64 {
        self.ctime_ns
    }

    pub fn of_stat(st: &rustix::fs::Stat) -> Stamp {
        Stamp {
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
            ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
            ino: st.st_ino,
        }
    }

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

/// The file as loaded, its entries looked up where they lie: loading
/// 12,000 entries into a map of owned paths cost a no-op more than the
/// lookups it served.
#[derive(Default)]
struct Loaded {
    bytes: Bytes,
    /// Where the offsets table starts (the entries end there).
    offsets_at: usize,
    count: usize,
}

impl Loaded {
    /// The entries in `bytes`, or `None` when it is not a whole, intact file.
    fn parse(bytes: Bytes) -> Option<Loaded> {
        let body_len = bytes.len().checked_sub(8)?;
        let (body, check) = bytes.split_at(body_len);
        if checksum(body).to_le_bytes() != check || !body.starts_with(MAGIC) {
            return None;
        }
        let count = usize::try_from(u64::from_le_bytes(body.get(8..16)?.try_into().ok()?)).ok()?;
        let offsets_at = body_len.checked_sub(count.checked_mul(4)?)?;
        (offsets_at >= 16).then_some(Loaded {
            bytes,
            offsets_at,
            count,
        })
    }

    /// The entries' part of the file (every lookup stays inside it).
    fn entries_part(&self) -> &[u8] {
        &self.bytes[..self.offsets_at]
    }

    /// The offset of the `i`th entry, in path order.
    fn offset(&self, i: usize) -> usize {
        let at = self.offsets_at + 4 * i;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap()) as usize
    }

    /// The offset of `path`'s entry, by binary search.
    fn find(&self, path: &[u8]) -> Option<usize> {
        let body = self.entries_part();
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.offset(mid);
            let (found, _) = entry_at(body, at)?;
            match found.cmp(path) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(at),
            }
        }
        None
    }

    /// The entry for `path`: first the one at `cursor` (where the previous
    /// lookup ended: files looked up in path order are mostly neighbours in
    /// the file, sorted by bytes; where the two orders differ, at a name
    /// with a byte below `/`, the lookup falls back to the search), else by
    /// binary search. Leaves `cursor` after
    /// the entry found.
    fn get(&self, path: &[u8], cursor: &mut Cursor) -> Option<Entry> {
        let body = self.entries_part();
        let at = match entry_at(body, cursor.0) {
            Some((found, _)) if cursor.0 != 0 && found == path => cursor.0,
            _ => self.find(path)?,
        };
        let (found, next) = entry_at(body, at)?;
        if found != path {
            return None;
        }
        cursor.0 = next;
        Some(decode_fixed(&body[at + 4 + path.len()..]))
    }

    /// Every entry, in file order.
    fn entries(&self) -> impl Iterator<Item = (&[u8], Entry)> {
        let body = self.entries_part();
        let mut at = 16;
        std::iter::from_fn(move || {
            let (path, next) = entry_at(body, at)?;
            let entry = decode_fixed(&body[at + 4 + path.len()..]);
            at = next;
            Some((path, entry))
        })
    }
}

/// The path of the entry at `at` and the offset of the next one.
fn entry_at(body: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize;
    let path = body.get(at + 4..at + 4 + len)?;
    let next = at + 4 + len + FIXED;
    (next <= body.len()).then_some((path, next))
}

fn decode_fixed(fixed: &[u8]) -> Entry {
    let u64_of = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().unwrap());
    Entry {
        stamp: Stamp {
            size: u64_of(0),
            mtime_ns: u64_of(8) as i64,
            ctime_ns: u64_of(16) as i64,
            ino: u64_of(24),
        },
        hash: fixed[32..64].try_into().unwrap(),
    }
}

/// The file's bytes: mapped, not read, on a local disk (reading 2 MB into
/// fresh memory cost a no-op a millisecond of page faults). The file is only ever replaced by
/// a rename, never written in place, so the mapping cannot change under us.
#[derive(Default)]
enum Bytes {
    #[default]
    Empty,
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Empty => &[],
            Bytes::Mapped(map) => map,
            Bytes::Read(bytes) => bytes,
        }
    }
}

fn map(path: &Path) -> io::Result<Bytes> {
    let mut file = fs::File::open(path)?;
    if !on_local_disk(&file) {
        // On NFS (a Slurm cluster's shared cache) a file renamed over by
        // another machine can vanish under a mapping: a later page-in would
        // be SIGBUS. Read it instead.
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes)?;
        return Ok(Bytes::Read(bytes));
    }
    // SAFETY: see `Bytes`: vgmake never modifies the file in place; a user
    // who does so anyway at most makes the checksum fail (an empty cache).
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file)? };
    Ok(Bytes::Mapped(map))
}

/// Whether `file` lies on a local file system (by `statfs` magic), whose
/// renamed-over files live on while mapped.
fn on_local_disk(file: &fs::File) -> bool {
    rustix::fs::fstatfs(file).is_ok_and(|st| is_local(&st))
}

/// Whether a `statfs` answer names a local file system: one whose
/// timestamps and renames this machine sees as they happen (not NFS, with
/// its attribute cache, nor a FUSE mount that may report no times at all).
pub fn is_local(st: &rustix::fs::StatFs) -> bool {
    const LOCAL: [i64; 7] = [
        0xEF53,     // ext2/3/4
        0x58465342, // xfs
        0x9123683E, // btrfs
        0x01021994, // tmpfs
        0x794C7630, // overlayfs
        0xF2F52010, // f2fs
        0x2FC12FC1, // zfs
    ];
    LOCAL.contains(&(st.f_type as i64))
}

/// Where the last lookup of one thread ended in the loaded file (see
/// `Loaded::get`); a fresh one finds everything by binary search.
#[derive(Default)]
pub struct Cursor(usize);

/// The loaded file; a big one is read (mapped and checked) by a
/// thread of its own, while the build lists the corpus: the first lookup
/// waits for it.
struct Loading {
    ready: OnceLock<Loaded>,
    reading: Mutex<Option<std::thread::JoinHandle<Loaded>>>,
}

/// From this size on, the file is read in the background (about 0.5 ms of
/// work per megabyte: 6,000 corpus files make 2 MB).
const BACKGROUND_FROM: u64 = 512 * 1024;

impl Loading {
    fn start(path: &Path) -> Loading {
        let read = |path: PathBuf| map(&path).ok().and_then(Loaded::parse).unwrap_or_default();
        let big = fs::metadata(path).is_ok_and(|m| m.len() >= BACKGROUND_FROM);
        let thread = big
            .then(|| {
                let path = path.to_path_buf();
                std::thread::Builder::new()
                    .name("statcache".into())
                    .spawn(move || read(path))
                    .ok()
            })
            .flatten();
        match thread {
            Some(handle) => Loading {
                ready: OnceLock::new(),
                reading: Mutex::new(Some(handle)),
            },
            None => Loading::done(read(path.to_path_buf())),
        }
    }

    fn done(loaded: Loaded) -> Loading {
        Loading {
            ready: OnceLock::from(loaded),
            reading: Mutex::new(None),
        }
    }

    fn get(&self) -> &Loaded {
        self.ready.get_or_init(|| {
            let handle = self.reading.lock().unwrap().take();
            // A reader that panicked leaves an empty cache (an accelerator).
            handle.and_then(|h| h.join().ok()).unwrap_or_default()
        })
    }
}

/// Thread-safe; saved with [`StatCache::save`] (atomically) at the end of a build.
pub struct StatCache {
    path: PathBuf,
    loaded: Loading,
    /// Entries added (`Some`) or dropped (`None`) since the load; they
    /// override the loaded ones.
    changes: RwLock<FxHashMap<Box<[u8]>, Option<Entry>>>,
    /// Set when `changes` has an entry: a no-op build, which only looks up,
    /// takes no lock and writes (and stats) nothing at its end.
    changed: AtomicBool,
}

fn key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

impl StatCache {
    /// A cache that remembers nothing: every file is read (`vgmake verify`).
    pub fn none() -> StatCache {
        StatCache {
            path: PathBuf::new(),
            loaded: Loading::done(Loaded::default()),
            changes: RwLock::default(),
            changed: AtomicBool::new(false),
        }
    }

    /// Loads the cache file; a missing, unreadable or damaged one starts
    /// empty (it is only an accelerator).
    pub fn load(path: &Path) -> StatCache {
        StatCache {
            path: path.to_path_buf(),
            loaded: Loading::start(path),
            changes: RwLock::default(),
            changed: AtomicBool::new(false),
        }
    }

    #[cfg(test)]
    fn hash_file(&self, path: &Path) -> io::Result<blake3::Hash> {
        let meta = fs::metadata(path)?;
        self.hash_with_meta(path, &meta)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.merged().len()
    }

    fn get(&self, path: &[u8], cursor: &mut Cursor) -> Option<Entry> {
        if self.changed.load(Ordering::Acquire)
            && let Some(change) = self.changes.read().unwrap().get(path)
        {
            return *change;
        }
        self.loaded.get().get(path, cursor)
    }

    /// The blake3 hash of the file's contents; computed only when its stamp
    /// changed since it was last seen.
    pub fn hash_with_meta(&self, path: &Path, meta: &fs::Metadata) -> io::Result<blake3::Hash> {
        self.hash_with_stamp(path, Stamp::of(meta), &mut Cursor::default())
    }

    /// The hash remembered for `path` at `stamp`, without reading it.
    pub fn known_hash(
        &self,
        path: &Path,
        stamp: Stamp,
        cursor: &mut Cursor,
    ) -> Option<blake3::Hash> {
        let entry = self.get(key(path), cursor)?;
        (entry.stamp == stamp).then(|| blake3::Hash::from_bytes(entry.hash))
    }

    /// [`StatCache::hash_with_meta`] from a stamp taken another way (a
    /// `stat` at a folder's descriptor); `cursor` speeds up lookups in order.
    pub fn hash_with_stamp(
        &self,
        path: &Path,
        stamp: Stamp,
        cursor: &mut Cursor,
    ) -> io::Result<blake3::Hash> {
        if let Some(entry) = self.get(key(path), cursor)
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
        let entry = Entry {
            stamp,
            hash: *hash.as_bytes(),
        };
        self.changes
            .write()
            .unwrap()
            .insert(key(path).into(), Some(entry));
        self.changed.store(true, Ordering::Release);
    }

    /// Forgets every path under `prefix` (a removed cache entry).
    pub fn forget_under(&self, prefix: &Path) {
        let under = |p: &[u8]| Path::new(std::ffi::OsStr::from_bytes(p)).starts_with(prefix);
        let mut changes = self.changes.write().unwrap();
        for (path, entry) in changes.iter_mut() {
            if under(path) {
                *entry = None;
            }
        }
        for (path, _) in self.loaded.get().entries() {
            if under(path) {
                changes.insert(path.into(), None);
            }
        }
        self.changed.store(true, Ordering::Release);
    }

    /// The loaded entries with the changes applied, sorted by path.
    fn merged(&self) -> Vec<(Box<[u8]>, Entry)> {
        let changes = self.changes.read().unwrap();
        let mut list: Vec<(Box<[u8]>, Entry)> = self
            .loaded
            .get()
            .entries()
            .filter(|(p, _)| !changes.contains_key(*p))
            .map(|(p, e)| (p.into(), e))
            .chain(
                changes
                    .iter()
                    .filter_map(|(p, e)| e.map(|e| (p.clone(), e))),
            )
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// Writes the cache, dropping entries whose files are gone; nothing
    /// when no entry changed since it was loaded.
    pub fn save(&self) -> io::Result<()> {
        if !self.changed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut list = self.merged();
        list.retain(|(p, _)| Path::new(std::ffi::OsStr::from_bytes(p)).exists());
        crate::fsutil::write_atomic(&self.path, &encode(&list))
    }
}

fn encode(list: &[(Box<[u8]>, Entry)]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(48 + list.iter().map(|(p, _)| p.len() + 4 + FIXED).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&0u64.to_le_bytes());
    let mut offsets = Vec::with_capacity(list.len() * 4);
    for (path, e) in list {
        // Offsets are 32-bit: entries past 4 GB (40 million files) are left out.
        let Ok(at) = u32::try_from(out.len()) else {
            break;
        };
        offsets.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        out.extend_from_slice(&e.stamp.size.to_le_bytes());
        out.extend_from_slice(&e.stamp.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.stamp.ctime_ns.to_le_bytes());
        out.extend_from_slice(&e.stamp.ino.to_le_bytes());
        out.extend_from_slice(&e.hash);
    }
    let count = offsets.len() as u64 / 4;
    out[8..16].copy_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&offsets);
    let check = checksum(&out);
    out.extend_from_slice(&check.to_le_bytes());
    out
}

/// The file's checksum (see the module docs).
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
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
        assert_eq!(reloaded.len(), 1);
        assert_eq!(reloaded.hash_file(&file).unwrap(), blake3::hash(b"two"));
    }

    #[test]
    fn changes_override_the_loaded_entries_and_forgetting_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("out");
        fs::create_dir(&sub).unwrap();
        let (a, b) = (sub.join("a"), dir.path().join("b"));
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        let path = dir.path().join("stat.bin");
        let cache = StatCache::load(&path);
        cache.hash_file(&a).unwrap();
        cache.hash_file(&b).unwrap();
        cache.save().unwrap();
        let loaded = StatCache::load(&path);
        assert_eq!(loaded.len(), 2);
        let get = |p: &Path| loaded.get(key(p), &mut Cursor::default());
        assert!(get(&a).is_some() && get(&b).is_some());
        // A wrong hash remembered now wins over the loaded entry...
        loaded.remember(&b, &blake3::hash(b"lie")).unwrap();
        assert_eq!(loaded.hash_file(&b).unwrap(), blake3::hash(b"lie"));
        // ...and forgetting a folder drops what was loaded under it.
        loaded.forget_under(&sub);
        assert!(loaded.get(key(&a), &mut Cursor::default()).is_none());
        loaded.save().unwrap();
        let again = StatCache::load(&path);
        assert_eq!(again.len(), 1);
        assert!(again.get(key(&a), &mut Cursor::default()).is_none());
        assert_eq!(again.hash_file(&b).unwrap(), blake3::hash(b"lie"));
    }

    #[test]
    fn a_big_file_is_read_in_the_background_and_found_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat.bin");
        let entry = |i: u64| Entry {
            stamp: Stamp {
                size: i,
                mtime_ns: 1,
                ctime_ns: 2,
                ino: i,
            },
            hash: *blake3::hash(&i.to_le_bytes()).as_bytes(),
        };
        let mut list: Vec<(Box<[u8]>, Entry)> = (0..10_000u64)
            .map(|i| (format!("/corpus/{i:05}.mid").into_bytes().into(), entry(i)))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        fs::write(&path, encode(&list)).unwrap();
        assert!(fs::metadata(&path).unwrap().len() >= BACKGROUND_FROM);
        let cache = StatCache::load(&path);
        assert_eq!(cache.len(), 10_000);
        let mut cursor = Cursor::default();
        for i in [0u64, 1, 2, 5_000, 9_999] {
            let found = cache.get(format!("/corpus/{i:05}.mid").as_bytes(), &mut cursor);
            assert_eq!(found.map(|e| e.stamp), Some(entry(i).stamp));
        }
        assert!(cache.get(b"/corpus/x.mid", &mut cursor).is_none());
        // Every entry by binary search alone (a fresh cursor each), and the
        // paths around each one missing.
        for i in (0..10_000u64).step_by(7) {
            let path = format!("/corpus/{i:05}.mid");
            let found = cache.get(path.as_bytes(), &mut Cursor::default());
            assert_eq!(found.map(|e| e.hash), Some(entry(i).hash), "{path}");
            for near in [format!("/corpus/{i:05}.mi"), format!("/corpus/{i:05}.mid0")] {
                assert!(cache.get(near.as_bytes(), &mut Cursor::default()).is_none());
            }
        }
        assert!(cache.get(b"", &mut Cursor::default()).is_none());
        assert!(cache.get(b"/zzz", &mut Cursor::default()).is_none());
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
            assert_eq!(StatCache::load(&path).len(), 0);
        }
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert_eq!(StatCache::load(&path).len(), 0);
    }
}
