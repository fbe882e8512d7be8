//! Small file-system helpers: atomic writes, read-only trees, symlinks.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A sibling temp path unique to this process and call.
pub fn temp_sibling(path: &Path) -> std::path::PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Writes `bytes` to `path` so that readers see the old file or the new one,
/// never a part: temp file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, true)
}

/// [`write_atomic`] without the fsync: readers still see the old file or
/// the new one, but a power cut may lose the new one or leave it torn. For
/// a file whose damage is caught where it is read (an output's manifest,
/// which must hash to the output's name) and whose loss costs only a rerun.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, false)
}

fn replace(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes every file under `root` read-only, so that an edit through an
/// `out/` link cannot silently change a cached result.
pub fn make_read_only(root: &Path) -> io::Result<()> {
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            make_read_only(&entry.path())?;
        } else if kind.is_file() {
            let mut perms = entry.metadata()?.permissions();
            perms.set_mode(perms.mode() & 0o555);
            fs::set_permissions(entry.path(), perms)?;
        }
    }
    Ok(())
}

/// Replaces every file under `root` that has other hard links by a copy of
/// its own, so that what happens to the output (read-only, kept in the
/// cache) never happens to a file outside it.
pub fn unshare_hard_links(root: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            unshare_hard_links(&path)?;
        } else if kind.is_file() && entry.metadata()?.nlink() > 1 {
            let copy = temp_sibling(&path);
            fs::copy(&path, &copy)?;
            fs::rename(&copy, &path)?;
        }
    }
    Ok(())
}

/// Removes a tree, also when it holds read-only files or is missing.
pub fn remove_tree(root: &Path) -> io::Result<()> {
    match fs::remove_dir_all(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Points the symlink `link` at `target`, replacing what was there atomically.
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_sibling(link);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Total size in bytes of the files under `root`.
pub fn tree_size(root: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(root) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// The blake3 hash of a file's contents: large files memory-mapped and
/// hashed on all threads, small ones streamed.
pub fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    if fs::metadata(path)?.len() >= 1 << 20 {
        hasher.update_mmap_rayon(path)?;
    } else {
        hasher.update_reader(fs::File::open(path)?)?;
    }
    Ok(hasher.finalize())
}
