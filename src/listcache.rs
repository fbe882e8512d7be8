//! Remembers folder listings by the folder's stamp, so a no-op over a corpus
//! of thousands of files reads no folder: an entry added, removed or renamed
//! moves the folder's mtime and ctime, and a stamp that differs means the
//! folder is listed again. Kinds reach it through [`vgmake_api::Folders`].
//!
//! `cache/listings.bin`, read at the first listing a command asks for and
//! written (atomically) at the end of a build only when a listing changed:
//!
//! ```text
//! b"VGMLIST1"  u64 count
//! count x { u32 path length, path bytes, u64 size, i64 mtime_ns,
//!           i64 ctime_ns, u64 inode, u32 block length,
//!           block: u32 entries, entries x { u8 kind, u16 name length, name } }
//! u64          XXH3-64 of everything above (as statcache.rs)
//! ```
//!
//! All integers little-endian, entries sorted by name bytes, kinds as
//! [`EntryKind::code`]. A file that is short, long or fails its checksum is
//! ignored (every folder is then listed again). A block is decoded only when
//! its folder is asked for.
//!
//! Racy folders: a listing is remembered only when the folder's ctime is
//! [`SETTLED`] older than the moment the listing began. A change made in the
//! same clock tick as the one before it would leave the stamp as it was;
//! a folder still changing is therefore listed every time until it is quiet.
//! This assumes the file system's clock is within [`SETTLED`] of this
//! machine's, so only folders on local file systems are remembered (on NFS
//! the client's attribute cache can also hide a change for seconds), and
//! never one whose times read zero (some FUSE mounts).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use rustc_hash::FxHashMap;
use vgmake_api::{EntryKind, Folders, Listing};

use crate::statcache::{Stamp, checksum, is_local};

const MAGIC: &[u8; 8] = b"VGMLIST1";

/// How long a folder must have been left alone before its listing is
/// remembered: well above any file system's timestamp tick (a jiffy
/// locally, a second or two of clock skew on NFS).
const SETTLED: Duration = Duration::from_secs(2);

/// The file as read: each folder's stamp and where its block lies.
#[derive(Default)]
struct Loaded {
    bytes: Vec<u8>,
    folders: FxHashMap<Box<[u8]>, (Stamp, std::ops::Range<usize>)>,
}

impl Loaded {
    fn parse(bytes: Vec<u8>) -> Option<Loaded> {
        let body_len = bytes.len().checked_sub(8)?;
        let (body, check) = bytes.split_at(body_len);
        if checksum(body).to_le_bytes() != check || !body.starts_with(MAGIC) {
            return None;
        }
        let mut r = Reader { bytes: body, at: 8 };
        let count = r.u64()?;
        let mut folders = FxHashMap::default();
        for _ in 0..count.min(1 << 24) {
            let len = r.u32()? as usize;
            let path: Box<[u8]> = r.take(len)?.into();
            let stamp = Stamp::from_parts(r.u64()?, r.i64()?, r.i64()?, r.u64()?);
            let block_len = r.u32()? as usize;
            let start = r.at;
            r.take(block_len)?;
            folders.insert(path, (stamp, start..r.at));
        }
        (r.at == body.len()).then_some(Loaded { bytes, folders })
    }

    fn listing(&self, block: std::ops::Range<usize>) -> Option<Listing> {
        let mut r = Reader {
            bytes: self.bytes.get(block)?,
            at: 0,
        };
        let mut listing = Listing::default();
        for _ in 0..r.u32()? {
            let kind = EntryKind::from_code(r.take(1)?[0])?;
            let len = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
            let name = r.take(usize::from(len))?;
            // What `readdir` can return: a name, not a path (a file that
            // passes its checksum was still written by someone).
            let plain = !name.is_empty()
                && name != b"."
                && name != b".."
                && !name.iter().any(|&b| b == b'/' || b == 0);
            if !plain {
                return None;
            }
            listing.push(name, kind);
        }
        (r.at == r.bytes.len()).then_some(listing)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Thread-safe; saved with [`ListCache::save`] at the end of a build.
pub struct ListCache {
    path: PathBuf,
    loaded: OnceLock<Loaded>,
    /// Listings read from the disk and settled, by folder path; they
    /// override the loaded ones.
    changes: Mutex<FxHashMap<Box<[u8]>, (Stamp, Listing)>>,
    changed: AtomicBool,
    /// [`SETTLED`]; tests shorten it.
    settled: Duration,
}

impl ListCache {
    /// The cache in `path`, read when first asked.
    pub fn load(path: &Path) -> ListCache {
        ListCache {
            path: path.to_path_buf(),
            loaded: OnceLock::new(),
            changes: Mutex::default(),
            changed: AtomicBool::new(false),
            settled: SETTLED,
        }
    }

    fn loaded(&self) -> &Loaded {
        self.loaded.get_or_init(|| {
            fs::read(&self.path)
                .ok()
                .and_then(Loaded::parse)
                .unwrap_or_default()
        })
    }

    /// The remembered listing of the folder at `key`, if its stamp is still `stamp`.
    fn remembered(&self, key: &[u8], stamp: &Stamp) -> Option<Listing> {
        if let Some((known, listing)) = self.changes.lock().unwrap().get(key) {
            return (known == stamp).then(|| listing.clone());
        }
        let loaded = self.loaded();
        let (known, block) = loaded.folders.get(key)?;
        (known == stamp)
            .then(|| loaded.listing(block.clone()))
            .flatten()
    }

    /// Writes the cache, dropping folders that are gone; nothing when no
    /// listing changed since it was read.
    pub fn save(&self) -> io::Result<()> {
        if !self.changed.load(Ordering::Acquire) {
            return Ok(());
        }
        let changes = self.changes.lock().unwrap();
        let loaded = self.loaded();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut count = 0u64;
        let mut add = |path: &[u8], stamp: &Stamp, block: &[u8]| {
            if !Path::new(std::ffi::OsStr::from_bytes(path)).is_dir() {
                return;
            }
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path);
            let (size, mtime_ns, ctime_ns, ino) = stamp.parts();
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&mtime_ns.to_le_bytes());
            out.extend_from_slice(&ctime_ns.to_le_bytes());
            out.extend_from_slice(&ino.to_le_bytes());
            out.extend_from_slice(&(block.len() as u32).to_le_bytes());
            out.extend_from_slice(block);
            count += 1;
        };
        for (path, (stamp, block)) in &loaded.folders {
            if !changes.contains_key(path) {
                add(path, stamp, &loaded.bytes[block.clone()]);
            }
        }
        for (path, (stamp, listing)) in changes.iter() {
            add(path, stamp, &encode_block(listing));
        }
        out[8..16].copy_from_slice(&count.to_le_bytes());
        let check = checksum(&out);
        out.extend_from_slice(&check.to_le_bytes());
        crate::fsutil::write_atomic(&self.path, &out)
    }
}

fn encode_block(listing: &Listing) -> Vec<u8> {
    let mut block = Vec::with_capacity(4 + listing.len() * 24);
    block.extend_from_slice(&(listing.len() as u32).to_le_bytes());
    for (name, kind) in listing.iter() {
        let name = name.as_bytes();
        block.push(kind.code());
        block.extend_from_slice(&(name.len() as u16).to_le_bytes());
        block.extend_from_slice(name);
    }
    block
}

impl Folders for ListCache {
    fn list(&self, dir: &Path) -> io::Result<Listing> {
        let key = dir.as_os_str().as_bytes();
        let began = SystemTime::now();
        let stamp = Stamp::of_stat(&rustix::fs::stat(dir)?);
        if let Some(listing) = self.remembered(key, &stamp) {
            return Ok(listing);
        }
        let listing = Listing::read(dir)?;
        // Remembered only when settled (see the module docs), and when every
        // name fits the file's 16-bit lengths (any Linux name does).
        let settled = began
            .checked_sub(self.settled)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .is_some_and(|limit| stamp.ctime_ns() < limit.as_nanos() as i64);
        let fits = listing
            .iter()
            .all(|(n, _)| n.len() <= usize::from(u16::MAX));
        let (_, mtime_ns, ctime_ns, _) = stamp.parts();
        let timed = mtime_ns != 0 && ctime_ns != 0;
        if settled
            && fits
            && timed
            && rustix::fs::statfs(dir).is_ok_and(|st| is_local(&st))
            && Stamp::of_stat(&rustix::fs::stat(dir)?) == stamp
        {
            self.changes
                .lock()
                .unwrap()
                .insert(key.into(), (stamp, listing.clone()));
            self.changed.store(true, Ordering::Release);
        }
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(listing: &Listing) -> Vec<String> {
        listing
            .iter()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect()
    }

    /// A cache that counts any folder as settled (a real one waits 2 s).
    fn eager(file: &Path) -> ListCache {
        ListCache {
            settled: Duration::ZERO,
            ..ListCache::load(file)
        }
    }

    #[test]
    fn a_listing_is_remembered_across_builds_until_an_entry_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let corpus = tmp.path().join("corpus");
        fs::create_dir_all(corpus.join("sub")).unwrap();
        fs::write(corpus.join("b.mid"), b"x").unwrap();
        fs::write(corpus.join("a.mid"), b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let file = tmp.path().join("listings.bin");
        let key = corpus.as_os_str().as_bytes();
        let stamp = || Stamp::of_stat(&rustix::fs::stat(&corpus).unwrap());

        let cache = eager(&file);
        assert_eq!(
            names(&cache.list(&corpus).unwrap()),
            ["a.mid", "b.mid", "sub"]
        );
        cache.save().unwrap();
        assert!(file.exists());

        // The next build finds it without reading the folder.
        let next = eager(&file);
        let remembered = next.remembered(key, &stamp()).expect("remembered");
        assert_eq!(names(&remembered), ["a.mid", "b.mid", "sub"]);
        assert_eq!(remembered.iter().nth(2).unwrap().1, EntryKind::Folder);
        next.save().unwrap(); // nothing changed: not rewritten
        assert!(!next.changed.load(Ordering::Acquire));

        // A new file moves the folder's stamp: listed again.
        fs::write(corpus.join("c.mid"), b"x").unwrap();
        assert!(next.remembered(key, &stamp()).is_none());
        assert_eq!(
            names(&next.list(&corpus).unwrap()),
            ["a.mid", "b.mid", "c.mid", "sub"]
        );
        // A rename too.
        fs::rename(corpus.join("a.mid"), corpus.join("z.mid")).unwrap();
        assert_eq!(
            names(&next.list(&corpus).unwrap()),
            ["b.mid", "c.mid", "sub", "z.mid"]
        );
    }

    #[test]
    fn a_folder_changed_just_now_is_not_remembered() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("a.mid"), b"x").unwrap();
        let cache = ListCache::load(&tmp.path().join("listings.bin"));
        assert_eq!(names(&cache.list(tmp.path()).unwrap()), ["a.mid"]);
        assert!(!cache.changed.load(Ordering::Acquire));
        cache.save().unwrap();
        assert!(!tmp.path().join("listings.bin").exists());
    }

    #[test]
    fn a_listing_holding_a_path_is_refused_even_with_a_right_checksum() {
        let tmp = tempfile::tempdir().unwrap();
        let corpus = tmp.path().join("corpus");
        fs::create_dir(&corpus).unwrap();
        let stamp = Stamp::of_stat(&rustix::fs::stat(&corpus).unwrap());
        let key = corpus.as_os_str().as_bytes();
        let file = tmp.path().join("listings.bin");
        for name in [
            &b"a.mid"[..],
            b"../../etc/x.mid",
            b"/abs.mid",
            b"",
            b"..",
            b"a\0b",
        ] {
            let mut listing = Listing::default();
            listing.push(name, EntryKind::File);
            let cache = ListCache::load(&file);
            cache
                .changes
                .lock()
                .unwrap()
                .insert(key.into(), (stamp, listing));
            cache.changed.store(true, Ordering::Release);
            cache.save().unwrap();
            let found = ListCache::load(&file).remembered(key, &stamp);
            assert_eq!(
                found.is_some(),
                name == b"a.mid",
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn a_damaged_file_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let corpus = tmp.path().join("corpus");
        fs::create_dir(&corpus).unwrap();
        fs::write(corpus.join("a.mid"), b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let file = tmp.path().join("listings.bin");
        let cache = eager(&file);
        cache.list(&corpus).unwrap();
        cache.save().unwrap();
        let mut bytes = fs::read(&file).unwrap();
        let stamp = Stamp::of_stat(&rustix::fs::stat(&corpus).unwrap());
        let key = corpus.as_os_str().as_bytes();
        for at in [0, 20, bytes.len() / 2, bytes.len() - 1] {
            bytes[at] ^= 1;
            fs::write(&file, &bytes).unwrap();
            assert!(
                eager(&file).remembered(key, &stamp).is_none(),
                "flip at {at}"
            );
            bytes[at] ^= 1;
        }
        fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        assert!(eager(&file).remembered(key, &stamp).is_none());
        fs::write(&file, &bytes).unwrap();
        assert!(eager(&file).remembered(key, &stamp).is_some());
    }
}
