//! Brings one stage up to date: compute its key, restore it from the action
//! cache, or run it in a staging folder and commit the result.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use vgmake_stages::api::{Input, Progress, StageContext, StageError};
use vgmake_stages::memo::DirMemo;

use crate::hashing::{KeyManifest, hash_path};
use crate::lock::unix_now;
use crate::pipeline::ResolvedStage;
use crate::store::{ActionRecord, Store};

/// What a build shares with every stage it runs.
pub struct BuildEnv<'a> {
    pub store: &'a Store,
    pub project_dir: &'a Path,
    pub data_dir: &'a Path,
    pub cancel: &'a AtomicBool,
    pub threads: usize,
}

/// A finished dependency, as its dependents see it.
#[derive(Debug, Clone)]
pub struct DepOutput {
    pub stage: String,
    pub kind: String,
    pub output: String,
}

/// How a stage came up to date.
pub struct Done {
    pub key: String,
    pub output: String,
    /// False when restored from the action cache.
    pub ran: bool,
    /// Time spent in this build (a cache hit costs only the lookup).
    pub seconds: f64,
}

/// The key manifest of `stage` given its dependencies' outputs.
pub fn key_manifest(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
) -> Result<KeyManifest, String> {
    let external = stage
        .kind
        .external_inputs(&stage.params, env.project_dir, env.data_dir)
        .map_err(|e| format!("reading its inputs: {e}"))?;
    let mut ext = BTreeMap::new();
    for path in &external.paths {
        let hash = hash_path(path, &env.store.stats)
            .map_err(|e| format!("hashing {}: {e}", path.display()))?;
        ext.insert(
            format!("path:{}", display_name(path, env.project_dir, env.data_dir)),
            hash.to_hex().to_string(),
        );
    }
    for (name, value) in external.values {
        ext.insert(name, value);
    }
    Ok(KeyManifest {
        kind: stage.kind.name().to_string(),
        version: stage.kind.version(),
        params: stage.params.values().clone(),
        deps: deps
            .iter()
            .map(|d| (d.stage.clone(), d.output.clone()))
            .collect(),
        external: ext,
    })
}

/// A path as it enters a key: relative to the project or the bundled data,
/// so that two checkouts of one project share keys.
fn display_name(path: &Path, project_dir: &Path, data_dir: &Path) -> String {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let path = canon(path);
    if let Ok(rel) = path.strip_prefix(canon(data_dir)) {
        return format!("<data>/{}", rel.display());
    }
    if let Ok(rel) = path.strip_prefix(canon(project_dir)) {
        return rel.display().to_string();
    }
    path.display().to_string()
}

/// The cached result for `key`, if its output verifies. A damaged output is
/// discarded (and said so through `progress`) so the stage reruns.
pub fn lookup(env: &BuildEnv, key: &str, progress: &dyn Progress) -> Option<ActionRecord> {
    let record = env.store.record(key)?;
    match env.store.verify_output(&record.output) {
        Ok(()) => Some(record),
        Err(why) => {
            progress.log(&format!(
                "cached result failed verification, rebuilding: {why}"
            ));
            env.store.discard(key, &record.output);
            None
        }
    }
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Brings `stage` up to date. `force` runs it even when cached.
pub fn execute(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
    force: bool,
    refresh: bool,
    progress: &StageLog,
    key_locks: &crate::scheduler::KeyLocks,
) -> Result<Done, String> {
    let started = Instant::now();
    let manifest = key_manifest(env, stage, deps)?;
    let key = manifest.key().to_hex().to_string();
    // Another variant computing the same key runs first; this one then finds its result.
    let key_lock = key_locks.lock_for(&key);
    let _running = key_lock.lock().unwrap_or_else(|e| e.into_inner());
    if !force {
        if let Some(record) = lookup(env, &key, progress) {
            return Ok(Done {
                key,
                output: record.output,
                ran: false,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
    let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
    let staging = env.store.tmp_dir().join(format!(
        "{}-{}-{}-{n}",
        stage.name,
        &key[..12],
        std::process::id()
    ));
    let out_dir = staging.join("out");
    let temp_dir = staging.join("tmp");
    let created = fs::create_dir_all(&out_dir).and_then(|_| fs::create_dir_all(&temp_dir));
    created.map_err(|e| format!("creating staging folder {}: {e}", staging.display()))?;
    let result = run_in(env, stage, deps, &out_dir, &temp_dir, refresh, progress);
    let ran_for = started.elapsed().as_secs_f64();
    let result = result.and_then(|memo_keys| {
        let metrics = fs::read(out_dir.join("metrics.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let (output, _) = env
            .store
            .commit_output(&out_dir)
            .map_err(|e| format!("storing the output in {}: {e}", env.store.root.display()))?;
        let seconds = started.elapsed().as_secs_f64();
        progress.log(&format!(
            "ran in {ran_for:.3} s, stored in {:.3} s",
            seconds - ran_for
        ));
        let record = ActionRecord {
            key: key.clone(),
            stage: stage.name.clone(),
            manifest,
            output: output.clone(),
            seconds,
            finished: unix_now(),
            log: progress.lines(),
            memo_keys,
            metrics,
        };
        env.store
            .write_record(&record)
            .map_err(|e| format!("writing the action record: {e}"))?;
        Ok(Done {
            key,
            output,
            ran: true,
            seconds,
        })
    });
    let _ = crate::fsutil::remove_tree(&staging);
    result
}

/// Runs the stage's code; returns the memo keys it used.
fn run_in(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
    out_dir: &Path,
    temp_dir: &Path,
    refresh: bool,
    progress: &StageLog,
) -> Result<Vec<String>, String> {
    let mut inputs = Vec::new();
    for dep in deps {
        env.store
            .verify_output(&dep.output)
            .map_err(|e| format!("input `{}` is damaged: {e}", dep.stage))?;
        inputs.push(Input {
            stage: dep.stage.clone(),
            kind: dep.kind.clone(),
            dir: env.store.output_dir(&dep.output),
        });
    }
    let memo = DirMemo::new(env.store.memo_dir(stage.kind.name(), stage.kind.version()))
        .map_err(|e| format!("opening the memo: {e}"))?;
    let state_root = env.store.state_root();
    let ctx = StageContext {
        stage: &stage.name,
        params: &stage.params,
        inputs: &inputs,
        out_dir,
        temp_dir,
        project_dir: env.project_dir,
        data_dir: env.data_dir,
        memo: &memo,
        progress,
        cancel: env.cancel,
        refresh,
        threads: env.threads,
        state_root: &state_root,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| stage.kind.run(&ctx)));
    if memo.corrupt_entries() > 0 {
        progress.log(&format!(
            "dropped {} corrupt memo entries (recomputed)",
            memo.corrupt_entries()
        ));
    }
    match outcome {
        Ok(Ok(())) => Ok(memo.used_keys()),
        Ok(Err(StageError::Cancelled)) => {
            Err("cancelled (Ctrl-C); finished items are kept for the next build".into())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!(
                "internal error (panic) in stage kind `{}`: {msg}",
                stage.kind.name()
            ))
        }
    }
}

/// A stage's [`Progress`]: keeps its log lines for the record and forwards
/// everything to the build's display.
pub struct StageLog {
    pub stage: String,
    lines: std::sync::Mutex<Vec<String>>,
    sink: std::sync::Arc<dyn crate::report::Display>,
}

const MAX_LOG_LINES: usize = 2000;

impl StageLog {
    pub fn new(stage: &str, sink: std::sync::Arc<dyn crate::report::Display>) -> Self {
        StageLog {
            stage: stage.to_string(),
            lines: Default::default(),
            sink,
        }
    }
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Progress for StageLog {
    fn set_total(&self, total: u64) {
        self.sink.set_total(&self.stage, total);
    }
    fn advance(&self, n: u64) {
        self.sink.advance(&self.stage, n);
    }
    fn message(&self, msg: &str) {
        self.sink.message(&self.stage, msg);
    }
    fn log(&self, line: &str) {
        let mut lines = self.lines.lock().unwrap();
        if lines.len() >= MAX_LOG_LINES {
            lines.remove(0);
        }
        lines.push(line.to_string());
        self.sink.log(&self.stage, line);
    }
}

/// The `out/<variant>/<stage>` link path.
pub fn out_link(project_dir: &Path, variant: &str, stage: &str) -> PathBuf {
    project_dir.join("out").join(variant).join(stage)
}
