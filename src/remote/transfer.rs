//! The remote cache's transfers: fetching a record and its blobs (every
//! byte re-hashed before it is trusted), pushing blobs then the record,
//! memo entries and state folders, and the notes of unfinished pushes.

use super::*;

pub(super) fn state_name(store: &Store, state_dir: &Path) -> Option<String> {
    let rel = state_dir.strip_prefix(store.root.join("state")).ok()?;
    Some(format!("state/{}", rel.to_string_lossy()))
}

#[derive(Serialize, Deserialize)]
pub(super) struct PendingNote {
    pub(super) key: String,
    pub(super) memo_dir: PathBuf,
}

pub(super) enum Fetch {
    /// The remote is down (already warned about).
    Unreachable,
    /// The remote served something that does not verify.
    Bad(String),
}

pub(super) fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Inner {
    /// One failure of the remote: warn once, then stay local-only.
    pub(super) fn down(&self, e: &S3Error) {
        if !self.dead.swap(true, Ordering::SeqCst) {
            let msg = self.client.redact(&e.to_string());
            (self.warn)(&format!(
                "warning: remote cache {} unavailable ({msg}); continuing without it",
                self.url
            ));
        }
    }

    pub(super) fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Fetch> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(Fetch::Unreachable);
        }
        self.client.get(name).map_err(|e| {
            self.down(&e);
            Fetch::Unreachable
        })
    }

    pub(super) fn put(&self, name: &str, body: &[u8], create_only: bool) -> Result<Put, ()> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(());
        }
        self.client
            .put(name, body, create_only)
            .map_err(|e| self.down(&e))
    }

    /// The record for `key`, checked: it names `key`, its key manifest
    /// hashes to `key`, and its file list hashes to its output.
    pub(super) fn remote_record(&self, key: &str) -> Result<Option<RemoteRecord>, Fetch> {
        let Some(bytes) = self.get(&format!("ac/{key}"))? else {
            return Ok(None);
        };
        let r: RemoteRecord = serde_json::from_slice(&bytes)
            .map_err(|e| Fetch::Bad(format!("record ac/{key} unreadable: {e}")))?;
        if r.record.key != key || r.record.manifest.key().to_hex().as_str() != key {
            return Err(Fetch::Bad(format!("record ac/{key} is not for this key")));
        }
        if r.tree.hash().to_hex().as_str() != r.record.output {
            return Err(Fetch::Bad(format!(
                "record ac/{key}: its file list does not hash to its output {}",
                r.record.output
            )));
        }
        for f in &r.tree.files {
            if !safe_relative(&f.path)
                || (!f.path.ends_with('/') && blake3::Hash::from_hex(&f.hash).is_err())
            {
                return Err(Fetch::Bad(format!(
                    "record ac/{key}: unsafe or malformed entry `{}`",
                    f.path
                )));
            }
        }
        Ok(Some(r))
    }

    /// Downloads every file of `tree` into a staging folder, verifying each,
    /// and commits it as output `output`.
    pub(super) fn download_tree(
        &self,
        store: &Store,
        key: &str,
        tree: &TreeManifest,
        output: &str,
    ) -> Result<(), Fetch> {
        let staging = store
            .tmp_dir()
            .join(format!("fetch-{}-{}", &key[..12], unique()));
        let result = self.download_files(tree, &staging).and_then(|()| {
            let (hash, _) = store
                .commit_output(&staging)
                .map_err(|e| Fetch::Bad(format!("storing the fetched output: {e}")))?;
            if hash != output {
                return Err(Fetch::Bad(format!(
                    "fetched output hashes to {hash}, not {output}"
                )));
            }
            Ok(())
        });
        let _ = crate::fsutil::remove_tree(&staging);
        result
    }

    /// Downloads `tree`'s files into `dir` (created), in parallel, each
    /// re-hashed against the list.
    pub(super) fn download_files(&self, tree: &TreeManifest, dir: &Path) -> Result<(), Fetch> {
        fs::create_dir_all(dir)
            .map_err(|e| Fetch::Bad(format!("creating {}: {e}", dir.display())))?;
        for f in tree.files.iter().filter(|f| f.path.ends_with('/')) {
            fs::create_dir_all(dir.join(&f.path))
                .map_err(|e| Fetch::Bad(format!("creating {}: {e}", f.path)))?;
        }
        let files: Vec<_> = tree
            .files
            .iter()
            .filter(|f| !f.path.ends_with('/'))
            .collect();
        for f in &files {
            if let Some(parent) = dir.join(&f.path).parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| Fetch::Bad(format!("creating {}: {e}", f.path)))?;
            }
        }
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<Fetch>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..TRANSFERS.min(files.len()) {
                scope.spawn(|| {
                    loop {
                        if failure.lock().unwrap().is_some() {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { return };
                        if let Err(e) =
                            self.download_blob(&f.hash, f.size, &dir.join(&f.path), &f.path)
                        {
                            failure.lock().unwrap().get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        match failure.into_inner().unwrap() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub(super) fn download_blob(
        &self,
        hash: &str,
        size: u64,
        to: &Path,
        what: &str,
    ) -> Result<(), Fetch> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(Fetch::Unreachable);
        }
        let name = format!("cas/{hash}");
        match self.client.get_to_file(&name, to, size) {
            Ok(Some((actual, actual_size))) => {
                if actual.to_hex().as_str() != hash || actual_size != size {
                    self.bad_blobs.lock().unwrap().insert(hash.to_string());
                    Err(Fetch::Bad(format!(
                        "blob {name} (for `{what}`) is corrupt: {actual_size} bytes hashing to {}, expected {size} bytes hashing to {hash}",
                        actual.to_hex()
                    )))
                } else {
                    Ok(())
                }
            }
            Ok(None) => Err(Fetch::Bad(format!("blob {name} (for `{what}`) is missing"))),
            Err(S3Error::Refused(m)) => Err(Fetch::Bad(self.client.redact(&m))),
            Err(e) => {
                self.down(&e);
                Err(Fetch::Unreachable)
            }
        }
    }

    /// Uploads one blob unless the remote has it; replaces a known-bad one.
    pub(super) fn upload_blob(&self, hash: &str, size: u64, path: &Path) -> Result<(), ()> {
        let name = format!("cas/{hash}");
        let bad = self.bad_blobs.lock().unwrap().contains(hash);
        if self.already_there(&name, size, bad)? {
            return Ok(());
        }
        let bytes = fs::read(path).map_err(|_| ())?;
        self.upload_checked(&name, hash, &bytes, bad)
    }

    /// The same for bytes already in memory (a memo entry read from a pack).
    pub(super) fn upload_bytes(&self, hash: &str, bytes: &[u8]) -> Result<(), ()> {
        let name = format!("cas/{hash}");
        let bad = self.bad_blobs.lock().unwrap().contains(hash);
        if self.already_there(&name, bytes.len() as u64, bad)? {
            return Ok(());
        }
        self.upload_checked(&name, hash, bytes, bad)
    }

    /// Whether a large blob not known to be bad is on the remote already.
    fn already_there(&self, name: &str, size: u64, bad: bool) -> Result<bool, ()> {
        if bad || size < HEAD_FIRST {
            return Ok(false);
        }
        self.client.exists(name).map_err(|e| self.down(&e))
    }

    fn upload_checked(&self, name: &str, hash: &str, bytes: &[u8], bad: bool) -> Result<(), ()> {
        // Never upload bytes that are not what the list says.
        if blake3::hash(bytes).to_hex().as_str() != hash {
            return Err(());
        }
        self.put(name, bytes, !bad)?;
        if bad {
            self.bad_blobs.lock().unwrap().remove(hash);
        }
        Ok(())
    }

    pub(super) fn upload_tree(&self, dir: &Path, tree: &TreeManifest) -> Result<(), ()> {
        let mut seen = HashSet::new();
        let files: Vec<_> = tree
            .files
            .iter()
            .filter(|f| !f.path.ends_with('/') && seen.insert(f.hash.clone()))
            .collect();
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..TRANSFERS.min(files.len()) {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { return };
                        if self
                            .upload_blob(&f.hash, f.size, &dir.join(&f.path))
                            .is_err()
                        {
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        if failed.load(Ordering::Relaxed) {
            Err(())
        } else {
            Ok(())
        }
    }

    pub(super) fn push_job(&self, job: &PushJob) {
        let key = &job.record.key;
        let pending = self.pending_dir.join(key);
        let done = self.push_record(job).is_ok();
        if done {
            self.pushed.fetch_add(1, Ordering::Relaxed);
            let _ = fs::remove_file(pending);
        } else {
            self.failed_pushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn push_record(&self, job: &PushJob) -> Result<(), ()> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(());
        }
        let record = &job.record;
        let out_dir = job.store_root.join("outputs").join(&record.output);
        let manifest_path = job
            .store_root
            .join("manifests")
            .join(format!("{}.json", record.output));
        let tree: TreeManifest = fs::read(manifest_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(())?;
        self.upload_tree(&out_dir, &tree)?;
        self.push_memo(&job.memo_dir, &record.memo_keys)?;
        let mut shared = record.clone();
        shared
            .log
            .retain(|l| !l.starts_with("(fetched from the remote cache"));
        let body = serde_json::to_vec(&RemoteRecord {
            record: shared,
            tree,
        })
        .map_err(|_| ())?;
        self.put(&format!("ac/{key}", key = record.key), &body, true)?;
        Ok(())
    }

    pub(super) fn push_memo(&self, memo_dir: &Path, keys: &[String]) -> Result<(), ()> {
        let kind_dir = memo_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let todo: Vec<&String> = {
            let known = self.known_memo.lock().unwrap();
            keys.iter()
                .filter(|k| !known.contains(*k) && k.len() >= 2)
                .collect()
        };
        // Entries live in packs or files (memo.rs): read them through the memo.
        let local = if todo.is_empty() {
            None
        } else {
            crate::memo::DirMemo::new(memo_dir).ok()
        };
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..TRANSFERS.min(todo.len()) {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(key) = todo.get(i) else { return };
                        let Some((hash, bytes)) = blake3::Hash::from_hex(key.as_str())
                            .ok()
                            .and_then(|k| local.as_ref()?.read_verified(&k))
                        else {
                            continue; // removed since (gc) or damaged: nothing to share
                        };
                        let hash = hash.to_hex().to_string();
                        let size = bytes.len() as u64;
                        let ok = self.upload_bytes(&hash, &bytes).is_ok()
                            && self
                                .put(
                                    &format!("memo/{kind_dir}/{key}"),
                                    &serde_json::to_vec(&MemoPointer { hash, size }).unwrap(),
                                    true,
                                )
                                .is_ok();
                        if ok {
                            self.known_memo.lock().unwrap().insert(key.to_string());
                        } else if self.dead.load(Ordering::Relaxed) {
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        if failed.load(Ordering::Relaxed) {
            Err(())
        } else {
            Ok(())
        }
    }
}

/// A relative path with no `..`, no absolute part and no empty segment.
pub(super) fn safe_relative(path: &str) -> bool {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    !trimmed.is_empty()
        && !trimmed.starts_with('/')
        && trimmed.split('/').all(|p| {
            !p.is_empty() && p != "." && p != ".." && !p.contains('\\') && !p.contains('\0')
        })
}
