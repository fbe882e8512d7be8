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
mod shared_memo;
mod transfer;

pub use shared_memo::SharedMemo;
use transfer::{Fetch, PendingNote, state_name, unique};

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

    /// Pushes a stage's result now and waits for it (a Slurm job without a
    /// shared file system fetches its inputs from the remote), whatever
    /// `push` says.
    pub fn push_now(
        &self,
        store: &Store,
        record: &ActionRecord,
        memo_dir: &Path,
    ) -> Result<(), String> {
        let job = PushJob {
            record: record.clone(),
            store_root: store.root.clone(),
            memo_dir: memo_dir.to_path_buf(),
        };
        self.inner
            .push_record(&job)
            .map_err(|()| format!("cannot push to {}", self.inner.url))
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
