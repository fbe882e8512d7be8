//! The remote cache: every stage result, memo entry and (optionally)
//! training state shared through an S3-compatible bucket.
//!
//! ```text
//! <prefix>/cas/<blake3>                  one file's bytes, named by their hash
//! <prefix>/ac/<stage key>                a stage's record: ActionRecord + file list
//! <prefix>/memo/<kind>-v<n>/<item key>   a memo entry: {"hash", "size"} of its payload blob
//! <prefix>/state/<kind>/<id>             a state folder's file list (push_state)
//! ```
//!
//! Blobs are content-addressed and written create-only, so the first writer
//! wins and every later one finds the same bytes. A record is written after
//! all of its blobs, create-only, so a record never points at a missing
//! blob and two machines racing on one key both succeed. Nothing fetched is
//! trusted before it is re-hashed: every blob is checked against the hash
//! in the record (and the record against its key) before it enters the
//! local cache; a bad blob is reported and the stage rebuilt (its push then
//! replaces the bad blob).
//!
//! A remote that cannot be reached never fails a build: the first failure
//! is reported once and the build goes on local-only.

pub mod config;
mod s3;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vgmake_api::{Memo, Progress};

use crate::hashing::TreeManifest;
use crate::memo::DirMemo;
use crate::store::{ActionRecord, Store};
pub use config::CacheConfig;
use s3::{Client, Put, S3Error};

/// Parallel transfers per stage.
const TRANSFERS: usize = 8;
/// Files at least this big are looked up (HEAD) before they are uploaded.
const HEAD_FIRST: u64 = 256 << 10;

/// What `ac/<key>` holds.
#[derive(Serialize, Deserialize)]
struct RemoteRecord {
    record: ActionRecord,
    tree: TreeManifest,
}

/// What `memo/<kind>-v<n>/<key>` holds.
#[derive(Serialize, Deserialize)]
struct MemoPointer {
    hash: String,
    size: u64,
}

/// Everything a build needs of the remote, shared by its stages.
pub struct Remote {
    inner: Arc<Inner>,
    pusher: Mutex<Option<(mpsc::Sender<PushJob>, std::thread::JoinHandle<()>)>>,
}

struct Inner {
    client: Client,
    /// `s3://bucket/prefix`, for messages.
    pub url: String,
    push: bool,
    push_state: bool,
    dead: AtomicBool,
    warn: Box<dyn Fn(&str) + Send + Sync>,
    /// Blobs found corrupt: the next push overwrites them.
    bad_blobs: Mutex<HashSet<String>>,
    /// Memo keys known to be on the remote (fetched or pushed).
    known_memo: Mutex<HashSet<String>>,
    pushed: AtomicUsize,
    failed_pushes: AtomicUsize,
    pending_dir: PathBuf,
}

struct PushJob {
    record: ActionRecord,
    store_root: PathBuf,
    memo_dir: PathBuf,
}

/// The `[cache]` settings after flags and environment.
pub struct Settings<'a> {
    pub file: &'a CacheConfig,
    pub flag: Option<&'a str>,
    pub no_remote: bool,
}

impl Remote {
    /// The remote the command uses, or `None` for local-only. An error is a
    /// configuration mistake (exit 2): a malformed URL or endpoint.
    pub fn open(
        settings: &Settings,
        store_root: &Path,
        warn: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Option<Remote>, String> {
        let Some((url, _source)) =
            config::choose(settings.file, settings.flag, settings.no_remote)?
        else {
            return Ok(None);
        };
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let region = settings
            .file
            .region
            .clone()
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let custom = settings
            .file
            .endpoint
            .clone()
            .or_else(|| var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| var("AWS_ENDPOINT_URL"));
        let (endpoint, path_style) = match custom {
            Some(e) => (e, true),
            None => (format!("https://s3.{region}.amazonaws.com"), false),
        };
        let timeout = var("VGMAKE_REMOTE_TIMEOUT")
            .and_then(|s| s.parse::<f64>().ok())
            .map_or(Duration::from_secs(20), Duration::from_secs_f64);
        let client = Client::new(
            &endpoint,
            path_style,
            &url.bucket,
            &region,
            &url.prefix,
            config::credentials(),
            timeout,
        )?;
        let inner = Arc::new(Inner {
            client,
            url: url.to_string(),
            push: settings.file.push.unwrap_or(true),
            push_state: settings.file.push_state.unwrap_or(false),
            dead: AtomicBool::new(false),
            warn,
            bad_blobs: Mutex::new(HashSet::new()),
            known_memo: Mutex::new(HashSet::new()),
            pushed: AtomicUsize::new(0),
            failed_pushes: AtomicUsize::new(0),
            pending_dir: store_root.join("remote-pending"),
        });
        Ok(Some(Remote {
            inner,
            pusher: Mutex::new(None),
        }))
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Whether the remote has a record for `key` (for `status` / `why`):
    /// the output hash it names, after checking the record against its key.
    pub fn has_record(&self, key: &str) -> Option<String> {
        self.inner
            .remote_record(key)
            .ok()
            .flatten()
            .map(|r| r.record.output)
    }

    /// On a local miss: the remote's result for `key`, every byte re-hashed
    /// and committed to the local cache. `None` when the remote has none,
    /// cannot be reached, or serves something that does not verify (said
    /// through `progress`).
    pub fn fetch_stage(
        &self,
        store: &Store,
        key: &str,
        progress: &dyn Progress,
    ) -> Option<ActionRecord> {
        let inner = &self.inner;
        let remote = match inner.remote_record(key) {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(Fetch::Unreachable) => return None,
            Err(Fetch::Bad(why)) => {
                let msg = format!("remote cache: {why}; rebuilding");
                progress.log(&msg);
                (inner.warn)(&format!("warning: {msg}"));
                return None;
            }
        };
        let started = std::time::Instant::now();
        let output = remote.record.output.clone();
        if store.verify_output(&output).is_err() {
            if let Err(why) = inner.download_tree(store, key, &remote.tree, &output) {
                match why {
                    Fetch::Unreachable => {}
                    Fetch::Bad(why) => {
                        let msg = format!("remote cache: {why}; not trusted, rebuilding");
                        progress.log(&msg);
                        (inner.warn)(&format!("warning: {msg}"));
                    }
                }
                return None;
            }
        }
        let mut record = remote.record;
        let bytes: u64 = remote.tree.files.iter().map(|f| f.size).sum();
        progress.log(&format!(
            "fetched from {} ({} files, {bytes} bytes) in {:.3} s",
            inner.url,
            remote
                .tree
                .files
                .iter()
                .filter(|f| !f.path.ends_with('/'))
                .count(),
            started.elapsed().as_secs_f64()
        ));
        record
            .log
            .push(format!("(fetched from the remote cache {})", inner.url));
        if store.write_record(&record).is_err() {
            return None;
        }
        Some(record)
    }

    /// After a stage ran: push its blobs, memo entries and record in the
    /// background (when `push` is on). A note in `cache/remote-pending/`
    /// marks it until done, so a build killed before the push completes has
    /// the next build finish it.
    pub fn push_stage(&self, store: &Store, record: &ActionRecord, memo_dir: &Path) {
        if !self.inner.push {
            return;
        }
        let job = PushJob {
            record: record.clone(),
            store_root: store.root.clone(),
            memo_dir: memo_dir.to_path_buf(),
        };
        let _ = fs::create_dir_all(&self.inner.pending_dir);
        let note = PendingNote {
            key: record.key.clone(),
            memo_dir: memo_dir.to_path_buf(),
        };
        let _ = crate::fsutil::write_atomic(
            &self.inner.pending_dir.join(&record.key),
            &serde_json::to_vec(&note).unwrap_or_default(),
        );
        if self.inner.dead.load(Ordering::Relaxed) {
            // Left for the next build with the remote.
            self.inner.failed_pushes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queue(job);
    }

    /// Queues the pushes a killed build left unfinished.
    pub fn resume_pending(&self, store: &Store) -> usize {
        if !self.inner.push {
            return 0;
        }
        let mut n = 0;
        for entry in fs::read_dir(&self.inner.pending_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let note: Option<PendingNote> = fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let record = note.as_ref().and_then(|n| store.record(&n.key));
            match (note, record) {
                (Some(note), Some(record)) => {
                    self.queue(PushJob {
                        record,
                        store_root: store.root.clone(),
                        memo_dir: note.memo_dir,
                    });
                    n += 1;
                }
                _ => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        n
    }

    fn queue(&self, job: PushJob) {
        let mut pusher = self.pusher.lock().unwrap();
        let (tx, _) = pusher.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<PushJob>();
            let inner = self.inner.clone();
            let handle = std::thread::spawn(move || {
                for job in rx {
                    inner.push_job(&job);
                }
            });
            (tx, handle)
        });
        let _ = tx.send(job);
    }

    /// Waits for the queued pushes; a line saying what was pushed, or what
    /// was left unpushed.
    pub fn finish(&self) -> Option<String> {
        let taken = self.pusher.lock().unwrap().take();
        if let Some((tx, handle)) = taken {
            drop(tx);
            let _ = handle.join();
        }
        let pushed = self.inner.pushed.load(Ordering::Relaxed);
        let failed = self.inner.failed_pushes.load(Ordering::Relaxed);
        match (pushed, failed) {
            (0, 0) => None,
            (p, 0) => Some(format!("pushed {p} result(s) to {}", self.inner.url)),
            (p, f) => Some(format!(
                "pushed {p} result(s) to {}; {f} left unpushed (the next build with the remote pushes them)",
                self.inner.url
            )),
        }
    }

    /// How many results could not be pushed (so far).
    pub fn left_unpushed(&self) -> usize {
        self.inner.failed_pushes.load(Ordering::Relaxed)
    }

    /// A memo for one run: the local memo, with misses looked up on the
    /// remote (verified before use).
    pub fn memo<'a>(&'a self, local: &'a DirMemo, kind_dir: &'a Path) -> SharedMemo<'a> {
        SharedMemo {
            local,
            inner: &self.inner,
            kind_dir: kind_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            fetched: AtomicUsize::new(0),
            stored: AtomicUsize::new(0),
        }
    }

    /// Fetches a stage's state folder when there is none locally
    /// (`push_state`), so that a run stopped elsewhere resumes here.
    pub fn fetch_state(&self, store: &Store, state_dir: &Path, progress: &dyn Progress) {
        if !self.inner.push_state || state_dir.exists() {
            return;
        }
        let Some(name) = state_name(store, state_dir) else {
            return;
        };
        let Ok(Some(bytes)) = self.inner.get(&name) else {
            return;
        };
        let Ok(tree) = serde_json::from_slice::<TreeManifest>(&bytes) else {
            return;
        };
        let staging = store.tmp_dir().join(format!("state-{}", unique()));
        match self.inner.download_files(&tree, &staging) {
            Ok(()) => {
                if let Some(parent) = state_dir.parent() {
                    let _ = fs::create_dir_all(parent);
                }
                if fs::rename(&staging, state_dir).is_ok() {
                    progress.log(&format!(
                        "resuming from state fetched from {}",
                        self.inner.url
                    ));
                }
            }
            Err(Fetch::Bad(why)) => progress.log(&format!("remote state not used: {why}")),
            Err(Fetch::Unreachable) => {}
        }
        let _ = crate::fsutil::remove_tree(&staging);
    }

    /// Pushes a stage's state folder (after a run, finished or stopped).
    pub fn push_state(&self, store: &Store, state_dir: &Path) {
        if !self.inner.push_state || !state_dir.is_dir() || self.inner.dead.load(Ordering::Relaxed)
        {
            return;
        }
        let Some(name) = state_name(store, state_dir) else {
            return;
        };
        let Ok(tree) = TreeManifest::scan(state_dir, &store.stats) else {
            return;
        };
        if self.inner.upload_tree(state_dir, &tree).is_ok() {
            // The state changes as training goes on: overwrite.
            let _ = self
                .inner
                .put(&name, &serde_json::to_vec(&tree).unwrap_or_default(), false);
        }
    }
}

fn state_name(store: &Store, state_dir: &Path) -> Option<String> {
    let rel = state_dir.strip_prefix(store.root.join("state")).ok()?;
    Some(format!("state/{}", rel.to_string_lossy()))
}

#[derive(Serialize, Deserialize)]
struct PendingNote {
    key: String,
    memo_dir: PathBuf,
}

enum Fetch {
    /// The remote is down (already warned about).
    Unreachable,
    /// The remote served something that does not verify.
    Bad(String),
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Inner {
    /// One failure of the remote: warn once, then stay local-only.
    fn down(&self, e: &S3Error) {
        if !self.dead.swap(true, Ordering::SeqCst) {
            let msg = self.client.redact(&e.to_string());
            (self.warn)(&format!(
                "warning: remote cache {} unavailable ({msg}); continuing without it",
                self.url
            ));
        }
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Fetch> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(Fetch::Unreachable);
        }
        self.client.get(name).map_err(|e| {
            self.down(&e);
            Fetch::Unreachable
        })
    }

    fn put(&self, name: &str, body: &[u8], create_only: bool) -> Result<Put, ()> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(());
        }
        self.client
            .put(name, body, create_only)
            .map_err(|e| self.down(&e))
    }

    /// The record for `key`, checked: it names `key`, its key manifest
    /// hashes to `key`, and its file list hashes to its output.
    fn remote_record(&self, key: &str) -> Result<Option<RemoteRecord>, Fetch> {
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
    fn download_tree(
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
    fn download_files(&self, tree: &TreeManifest, dir: &Path) -> Result<(), Fetch> {
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

    fn download_blob(&self, hash: &str, size: u64, to: &Path, what: &str) -> Result<(), Fetch> {
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
    fn upload_blob(&self, hash: &str, size: u64, path: &Path) -> Result<(), ()> {
        let name = format!("cas/{hash}");
        let bad = self.bad_blobs.lock().unwrap().contains(hash);
        if !bad && size >= HEAD_FIRST {
            match self.client.exists(&name) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    self.down(&e);
                    return Err(());
                }
            }
        }
        let bytes = fs::read(path).map_err(|_| ())?;
        // Never upload bytes that are not what the list says.
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            return Err(());
        }
        self.put(&name, &bytes, !bad)?;
        if bad {
            self.bad_blobs.lock().unwrap().remove(hash);
        }
        Ok(())
    }

    fn upload_tree(&self, dir: &Path, tree: &TreeManifest) -> Result<(), ()> {
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

    fn push_job(&self, job: &PushJob) {
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

    fn push_record(&self, job: &PushJob) -> Result<(), ()> {
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

    fn push_memo(&self, memo_dir: &Path, keys: &[String]) -> Result<(), ()> {
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
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..TRANSFERS.min(todo.len()) {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(key) = todo.get(i) else { return };
                        let payload = memo_dir.join(&key[..2]).join(key.as_str());
                        let Ok(sum) = fs::read_to_string(payload.with_extension("b3")) else {
                            continue; // removed since (gc): nothing to share
                        };
                        let hash = sum.trim().to_string();
                        let size = fs::metadata(&payload).map_or(0, |m| m.len());
                        let ok = self.upload_blob(&hash, size, &payload).is_ok()
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
fn safe_relative(path: &str) -> bool {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    !trimmed.is_empty()
        && !trimmed.starts_with('/')
        && trimmed.split('/').all(|p| {
            !p.is_empty() && p != "." && p != ".." && !p.contains('\\') && !p.contains('\0')
        })
}

/// The local memo, with misses looked up on the remote.
pub struct SharedMemo<'a> {
    local: &'a DirMemo,
    inner: &'a Inner,
    kind_dir: String,
    fetched: AtomicUsize,
    stored: AtomicUsize,
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

/// The remote of a command (flags, environment, `[cache]`), with warnings
/// going to `display`; pushes a killed build left are queued again.
pub fn open_for(
    project: &crate::project::Project,
    store: &Store,
    display: Arc<dyn crate::report::Display>,
) -> Result<Option<Remote>, String> {
    let settings = Settings {
        file: &project.pipeline.cache,
        flag: project.remote_flag.as_deref(),
        no_remote: project.no_remote,
    };
    let remote = Remote::open(
        &settings,
        &store.root,
        Box::new(move |m: &str| display.note(m)),
    )?;
    if let Some(r) = &remote {
        r.resume_pending(store);
    }
    Ok(remote)
}

/// The remote for a read-only command (`status`, `why`): warnings to stderr.
pub fn open_quiet(
    project: &crate::project::Project,
    store: &Store,
) -> Result<Option<Remote>, String> {
    // `status` has no --remote flags of its own: they come through Common.
    let settings = Settings {
        file: &project.pipeline.cache,
        flag: project.remote_flag.as_deref(),
        no_remote: project.no_remote,
    };
    Remote::open(&settings, &store.root, Box::new(|m: &str| eprintln!("{m}")))
}

/// The remote for `vgmake push`: pushes even where `push = false`.
pub fn open_for_push(
    project: &crate::project::Project,
    store: &Store,
) -> Result<Option<Remote>, String> {
    let mut file = project.pipeline.cache.clone();
    file.push = Some(true);
    let settings = Settings {
        file: &file,
        flag: project.remote_flag.as_deref(),
        no_remote: project.no_remote,
    };
    Remote::open(&settings, &store.root, Box::new(|m: &str| eprintln!("{m}")))
}
