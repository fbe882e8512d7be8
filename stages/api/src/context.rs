//! What a running stage gets from the engine: its parameters, its inputs,
//! an output folder, a per-item memo, a state folder, progress reporting and
//! a place for measurements.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::{IoContext, Params, StageError};

/// Inputs from outside the cache that enter a stage's key: files and
/// folders (hashed by content, with a stat cache), and named strings such as
/// allow-listed environment variables.
#[derive(Debug, Clone, Default)]
pub struct ExternalInputs {
    pub paths: Vec<PathBuf>,
    pub values: BTreeMap<String, String>,
}

/// The output folder of one dependency.
#[derive(Debug, Clone)]
pub struct Input {
    /// The dependency's stage name in pipeline.toml.
    pub stage: String,
    /// Its stage kind.
    pub kind: String,
    /// The slot of the consuming kind's [`crate::Inputs`] it fills (`None`
    /// for a kind that takes any inputs).
    pub slot: Option<&'static str>,
    /// Its output folder (read-only).
    pub dir: PathBuf,
    /// The blake3 of each file in `dir`, as the engine verified them before
    /// the run (empty where it did not).
    pub hashes: FileHashes,
}

/// The content hashes of an input folder's files, by path relative to the
/// folder (`/`-separated): a stage that needs a file's hash takes it from
/// here instead of hashing the bytes again (encode: 5 MB of corpus, ~1.2
/// ms). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FileHashes(Arc<HashMap<String, blake3::Hash>>);

impl FileHashes {
    pub fn new(hashes: HashMap<String, blake3::Hash>) -> FileHashes {
        FileHashes(Arc::new(hashes))
    }

    /// The hash of the file at `path` (relative, `/`-separated), or `None`
    /// when it is not known.
    pub fn get(&self, path: &str) -> Option<blake3::Hash> {
        self.0.get(path).copied()
    }
}

/// A per-item cache for stages that map over items (one downloaded file, one
/// encoded song). Keys are chosen by the stage (a hash of the item's content
/// and the parameters that shape its result); the engine namespaces them by
/// stage kind and version. Values are written atomically and verified on read.
pub trait Memo: Send + Sync {
    /// The stored bytes for `key`, or `None` when absent (or found corrupt,
    /// which the engine reports and drops).
    fn get(&self, key: &blake3::Hash) -> Option<Vec<u8>>;
    /// Stores `value` under `key`.
    fn put(&self, key: &blake3::Hash, value: &[u8]) -> std::io::Result<()>;
    /// Stores the file at `path` under `key` by moving it (for large items
    /// streamed to disk). The file must be on the same file system as the
    /// staging folder (any path under the stage's output or temp folder is).
    fn put_file(&self, key: &blake3::Hash, path: &Path) -> std::io::Result<()>;
    /// The path of the stored file for `key` (read-only, do not modify), to
    /// copy or hard-link from; `None` when absent or corrupt.
    fn path(&self, key: &blake3::Hash) -> Option<PathBuf>;
}

/// Progress reporting. The engine draws a bar on a terminal and plain lines
/// otherwise; stages only say how far they are.
pub trait Progress: Send + Sync {
    /// Sets the number of items to do (0 = unknown).
    fn set_total(&self, total: u64);
    /// Adds `n` finished items.
    fn advance(&self, n: u64);
    /// A short status such as "nes 120/4195, 2.1 MB".
    fn message(&self, msg: &str);
    /// A line for the stage's log (kept in the cache beside the result and
    /// shown by `vgmake show`); also printed under `--verbose`.
    fn log(&self, line: &str);
}

/// A progress sink that discards everything (for tests and CLI tools).
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn message(&self, _: &str) {}
    fn log(&self, _: &str) {}
}

/// Where a stage that starts a process group notes its id, in its
/// `temp_dir`: a later build stops that group if it outlived its own build
/// (vgmake killed with -9) before removing the staging folder.
pub const PGID_FILE: &str = ".vgmake-pgid";

/// Numbers measured while a stage runs (tokens/s, wall time, peak memory).
/// The engine keeps them in the action record beside the result, never in
/// the output: a stopwatch must not decide what reruns.
#[derive(Debug, Default)]
pub struct Measurements(Mutex<BTreeMap<String, f64>>);

impl Measurements {
    pub fn record(&self, name: &str, value: f64) {
        self.0.lock().unwrap().insert(name.to_string(), value);
    }
    pub fn take(&self) -> BTreeMap<String, f64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Everything a running stage gets.
pub struct StageContext<'a> {
    /// This stage's name in pipeline.toml.
    pub stage: &'a str,
    /// Effective parameter values.
    pub params: &'a Params,
    /// Dependency outputs, in the order of `deps`.
    pub inputs: &'a [Input],
    /// The empty folder to write outputs into. Everything in it becomes the
    /// stage's output; write nothing elsewhere (except `temp_dir`).
    pub out_dir: &'a Path,
    /// Scratch space on the cache's file system, deleted after the run.
    pub temp_dir: &'a Path,
    /// The folder holding pipeline.toml (relative paths in parameters are
    /// resolved against it).
    pub project_dir: &'a Path,
    /// The folder of bundled data (the stages crate's `data/`, or
    /// `$VGMAKE_DATA`).
    pub data_dir: &'a Path,
    pub memo: &'a dyn Memo,
    pub progress: &'a dyn Progress,
    pub measurements: &'a Measurements,
    /// Set when the user pressed Ctrl-C: stop at the next item boundary and
    /// return [`StageError::Cancelled`]; finished items stay in the memo.
    pub cancel: &'a AtomicBool,
    /// True under `vgmake build --refresh STAGE`: source stages revalidate
    /// what they fetched instead of trusting their memo.
    pub refresh: bool,
    /// Worker threads the stage may use (`-j`).
    pub threads: usize,
    /// This run's folder of persistent, resumable state: see
    /// [`StageContext::state_dir`].
    pub state_dir: &'a Path,
}

impl StageContext<'_> {
    /// The dependency filling `slot` of this kind's declared [`crate::Inputs`].
    /// The engine checked the slots when it parsed the pipeline.
    pub fn input(&self, slot: &str) -> Result<&Input, StageError> {
        self.inputs
            .iter()
            .find(|i| i.slot == Some(slot))
            .ok_or_else(|| {
                StageError::Config(format!(
                    "stage `{}` has no input `{slot}` (its kind does not declare it)",
                    self.stage
                ))
            })
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Returns `Err(Cancelled)` once Ctrl-C was pressed.
    pub fn check_cancelled(&self) -> Result<(), StageError> {
        if self.is_cancelled() {
            Err(StageError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// A persistent folder (created on first use) for resumable state that
    /// outlives one run, e.g. training checkpoints. The engine names it by
    /// the stage's key without the parameters its kind lists in
    /// [`crate::StageKind::state_ignores`], so runs that differ only in those
    /// share it (raising `steps` resumes the shorter run). The stage writes
    /// into it atomically and must not trust it blindly.
    pub fn state_dir(&self) -> Result<&Path, StageError> {
        std::fs::create_dir_all(self.state_dir)
            .ctx(|| format!("creating the state folder {}", self.state_dir.display()))?;
        Ok(self.state_dir)
    }
}
