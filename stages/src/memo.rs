//! A [`Memo`] kept in a folder: the engine's per-item cache, also usable on
//! its own (tests, CLI tools).
//!
//! Each entry is two files: `<key>` (the payload) and `<key>.b3` (the
//! payload's blake3 hash, written last). An entry without its `.b3`, or
//! whose payload does not match it, is a miss and is removed, so a crash at
//! any moment leaves no entry that reads wrong.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::{Memo, Params, Progress, StageContext, StageError, StageKind, Value};

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

/// The effective parameters of `kind`: its defaults with `overrides` applied
/// and type-checked. For tests and CLI tools; the engine does the same with
/// file positions in its messages.
pub fn params_with(kind: &dyn StageKind, overrides: &[(&str, Value)]) -> Result<Params, String> {
    let specs = kind.params();
    let mut values = std::collections::BTreeMap::new();
    for spec in &specs {
        values.insert(spec.name.to_string(), spec.default.clone());
    }
    for (name, value) in overrides {
        let spec = specs
            .iter()
            .find(|s| s.name == *name)
            .ok_or_else(|| format!("stage kind `{}` has no parameter `{name}`", kind.name()))?;
        let value = spec.ty.check(value).map_err(|e| format!("`{name}`: {e}"))?;
        values.insert(name.to_string(), value);
    }
    let params = Params::new(values);
    kind.validate(&params)?;
    Ok(params)
}

/// Runs `kind` outside the engine: parameters from defaults and `overrides`,
/// outputs into `out_dir` (created), memo and temp under `work_dir`. For
/// tests of a stage kind and for CLI tools.
pub fn run_standalone(
    kind: &dyn StageKind,
    overrides: &[(&str, Value)],
    inputs: &[crate::api::Input],
    out_dir: &Path,
    work_dir: &Path,
    progress: &dyn Progress,
) -> Result<(), StageError> {
    let params = params_with(kind, overrides).map_err(StageError::Config)?;
    let io = |what: &str, e| StageError::io(what, e);
    fs::create_dir_all(out_dir).map_err(|e| io("creating the output folder", e))?;
    let temp_dir = work_dir.join("tmp");
    fs::create_dir_all(&temp_dir).map_err(|e| io("creating the temp folder", e))?;
    let memo = DirMemo::new(work_dir.join("memo").join(kind.name()))
        .map_err(|e| io("creating the memo", e))?;
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let data_dir = default_data_dir();
    let ctx = StageContext {
        stage: kind.name(),
        params: &params,
        inputs,
        out_dir,
        temp_dir: &temp_dir,
        project_dir: work_dir,
        data_dir: &data_dir,
        memo: &memo,
        progress,
        cancel: &cancel,
        refresh: false,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        state_root: &work_dir.join("state"),
    };
    kind.run(&ctx)
}

/// Where the bundled data (`data/demo`) lives: `$VGMAKE_DATA`, else the
/// repository's `data/` folder this crate was built from.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("VGMAKE_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("data"),
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
    }
}
