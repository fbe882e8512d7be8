//! The memo a stage sees when a remote is configured: the local memo first,
//! then the remote's entry (verified), and new entries offered to it.

use super::*;

/// The local memo, with misses looked up on the remote.
pub struct SharedMemo<'a> {
    pub(super) local: &'a DirMemo,
    pub(super) inner: &'a Inner,
    pub(super) kind_dir: String,
    pub(super) fetched: AtomicUsize,
    pub(super) stored: AtomicUsize,
}

impl SharedMemo<'_> {
    /// Looks `key` up on the remote; stores a verified entry locally.
    fn fetch(&self, key: &blake3::Hash) -> bool {
        let hex = key.to_hex().to_string();
        let Ok(Some(bytes)) = self.inner.get(&format!("memo/{}/{hex}", self.kind_dir)) else {
            return false;
        };
        let Ok(pointer) = serde_json::from_slice::<MemoPointer>(&bytes) else {
            return false;
        };
        let Ok(Some(payload)) = self.inner.get(&format!("cas/{}", pointer.hash)) else {
            return false;
        };
        if blake3::hash(&payload).to_hex().as_str() != pointer.hash
            || payload.len() as u64 != pointer.size
        {
            self.inner
                .bad_blobs
                .lock()
                .unwrap()
                .insert(pointer.hash.clone());
            (self.inner.warn)(&format!(
                "warning: remote cache: memo blob cas/{} is corrupt; not trusted, recomputing",
                pointer.hash
            ));
            return false;
        }
        if self.local.put(key, &payload).is_err() {
            return false;
        }
        self.inner.known_memo.lock().unwrap().insert(hex);
        self.fetched.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Says in the stage's log how many items came from the remote memo.
    pub fn report(&self, progress: &dyn Progress) {
        let fetched = self.fetched.load(Ordering::Relaxed);
        if fetched > 0 {
            progress.log(&format!(
                "memo: {fetched} item(s) fetched from the remote cache, {} computed here",
                self.stored.load(Ordering::Relaxed)
            ));
        }
    }
}

impl Memo for SharedMemo<'_> {
    fn get(&self, key: &blake3::Hash) -> Option<Vec<u8>> {
        self.local
            .get(key)
            .or_else(|| self.fetch(key).then(|| self.local.get(key)).flatten())
    }
    fn put(&self, key: &blake3::Hash, value: &[u8]) -> std::io::Result<()> {
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.local.put(key, value)
    }
    fn put_file(&self, key: &blake3::Hash, path: &Path) -> std::io::Result<()> {
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.local.put_file(key, path)
    }
    fn path(&self, key: &blake3::Hash) -> Option<PathBuf> {
        self.local
            .path(key)
            .or_else(|| self.fetch(key).then(|| self.local.path(key)).flatten())
    }
}
