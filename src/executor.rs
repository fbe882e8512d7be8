//! Brings one stage up to date: compute its key, restore it from the action
//! cache, or run it in a staging folder and commit the result.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustc_hash::FxHashMap;
use vgmake_api::{ExternalInputs, FileHashes, Input, Progress, ProjectFiles};

use crate::error::{Error, StageFailure};
use crate::hashing::{
    KeyManifest, PARALLEL_FROM, Reading, Stamped, TreeManifest, hash_paths, known_hashes,
    split_plain,
};
use crate::keymemo;
use crate::lock::unix_now;
use crate::pipeline::{Executor, ResolvedStage};
use crate::run::{StageRun, run_stage};
use crate::stage_log::StageLog;
use crate::store::{ActionRecord, Store};

/// What a build shares with every stage it runs.
pub struct BuildEnv<'a> {
    pub store: &'a Store,
    pub project_dir: &'a Path,
    pub data_dir: &'a Path,
    pub cancel: &'a AtomicBool,
    pub threads: usize,
    /// The remote cache, when one is configured and not turned off.
    pub remote: Option<&'a crate::remote::Remote>,
    /// Runs `executor = "slurm"` stages; `None` runs every stage here.
    pub slurm: Option<&'a crate::slurm::Slurm>,
    /// Where this process runs stages, when not in the build itself
    /// (`slurm job 12_3 on node7`): kept in their records.
    pub ran_on: Option<String>,
    /// The data and project folders, resolved once (see [`BuildEnv::roots`]).
    pub resolved_roots: std::sync::OnceLock<(PathBuf, PathBuf)>,
}

impl BuildEnv<'_> {
    /// The bundled data's folder and the project's, canonical: a path in a
    /// key is named relative to them. Resolved once per build, not once
    /// per stage (each `realpath` is a readlink per component).
    pub fn roots(&self) -> &(PathBuf, PathBuf) {
        self.resolved_roots
            .get_or_init(|| (resolved(self.data_dir), resolved(self.project_dir)))
    }
}

/// A finished dependency, as its dependents see it.
#[derive(Debug, Clone)]
pub struct DepOutput {
    pub stage: String,
    pub kind: String,
    /// The key it was built under (a Slurm job without a shared file
    /// system fetches it by this).
    pub key: String,
    pub output: String,
}

/// How a stage came up to date.
pub struct Done {
    pub key: String,
    pub output: String,
    /// False when restored from the action cache.
    pub ran: bool,
    /// Restored from the remote cache (verified) rather than the local one.
    pub fetched: bool,
    /// Time spent in this build (a cache hit costs only the lookup).
    pub seconds: f64,
}

/// What a stage's key is computed from, read from the disk: its external
/// inputs, listed, stat'ed and hashed.
pub struct Gathered {
    external: ExternalInputs,
    /// The prefix each folder's files take in the key (see `key_manifest`).
    prefixes: FxHashMap<Vec<u8>, String>,
    hashes: Vec<std::io::Result<Stamped>>,
}

/// Lists, stats and hashes the external inputs of `stage`; with
/// [`Reading::Stamps`], only stats them (see
/// [`hash_paths`]).
pub fn gather(env: &BuildEnv, stage: &ResolvedStage, reading: Reading) -> Result<Gathered, Error> {
    let external = stage
        .kind
        .external_inputs(
            &stage.params,
            &ProjectFiles {
                project_dir: env.project_dir,
                data_dir: env.data_dir,
                folders: &env.store.folders,
            },
        )
        .map_err(|source| Error::Key {
            stage: stage.name.clone(),
            source,
        })?;
    let roots = env.roots();
    // Each folder is resolved once (a corpus of 15,000 files would otherwise
    // cost 15,000 `realpath`s per no-op) into the prefix its files' names
    // take in the key; keyed by bytes, since `Path`'s hash walks components.
    let mut prefixes: FxHashMap<Vec<u8>, String> = FxHashMap::default();
    let mut folders = FolderResolver::default();
    for path in &external.paths {
        let Some((folder, _)) = split_plain(path) else {
            continue;
        };
        if !prefixes.contains_key(folder) {
            let folder_path = folders.resolve(Path::new(std::ffi::OsStr::from_bytes(folder)));
            let mut prefix = key_name(&folder_path, &roots.1, &roots.0);
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            prefixes.insert(folder.to_vec(), prefix);
        }
    }
    // Stat (and, when changed, hash) on every core: a corpus of thousands
    // of files is most of a no-op's time, and the kernel's stat scales.
    let hashes = hash_paths(&external.paths, &env.store.stats, reading);
    Ok(Gathered {
        external,
        prefixes,
        hashes,
    })
}

impl Gathered {
    /// Hashes every input, the ones a stamps-only gathering left unread
    /// too, reusing its listing.
    /// The stat cache's hashes for a stamps-only gathering: `Err` (with
    /// them filled in as far as known) when some input must be read.
    fn known(mut self, env: &BuildEnv) -> Result<Gathered, Gathered> {
        known_hashes(&self.external.paths, &mut self.hashes, &env.store.stats);
        let unknown = |h: &std::io::Result<Stamped>| matches!(h, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        if self.hashes.iter().any(unknown) {
            Err(self)
        } else {
            Ok(self)
        }
    }

    fn read_all(mut self, env: &BuildEnv) -> Gathered {
        self.hashes = hash_paths(&self.external.paths, &env.store.stats, Reading::All);
        self
    }
}

/// The key memo's digest of everything `stage`'s key is made of (see
/// `keymemo.rs`), or `None` when an input is a folder or unreadable.
fn memo_digest(
    env: &BuildEnv,
    gathered: &Gathered,
    stage: &ResolvedStage,
    deps: &[DepOutput],
) -> Option<[u8; 32]> {
    // Gathered into a buffer hashed 64 KB at a time: blake3 is several
    // times faster over long inputs than over 20,000 small updates, and a
    // buffer of the whole (6 MB for 60,000 files) cost 1,500 page faults.
    const BLOCK: usize = 64 * 1024;
    let mut hasher = blake3::Hasher::new_derive_key("vgmake key memo v1");
    let mut h = Vec::with_capacity(BLOCK + 4096);
    fn field(h: &mut Vec<u8>, bytes: &[u8]) {
        h.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        h.extend_from_slice(bytes);
    }
    field(&mut h, stage.kind.name().as_bytes());
    field(&mut h, &stage.kind.version().to_le_bytes());
    field(&mut h, &serde_json::to_vec(stage.params.values()).ok()?);
    for dep in deps {
        field(&mut h, dep.stage.as_bytes());
        field(&mut h, dep.output.as_bytes());
    }
    for (name, value) in &gathered.external.values {
        field(&mut h, name.as_bytes());
        field(&mut h, value.as_bytes());
    }
    let roots = env.roots();
    field(&mut h, roots.0.as_os_str().as_bytes());
    field(&mut h, roots.1.as_os_str().as_bytes());
    let mut last: Option<(&[u8], &str)> = None;
    for (path, hashed) in gathered.external.paths.iter().zip(&gathered.hashes) {
        let (Some(stamp), _) = hashed.as_ref().ok()? else {
            return None;
        };
        let (folder, name) = split_plain(path)?;
        let prefix = match last {
            Some((known, prefix)) if known == folder => prefix,
            _ => gathered.prefixes.get(folder)?.as_str(),
        };
        last = Some((folder, prefix));
        field(&mut h, prefix.as_bytes());
        field(&mut h, name);
        stamp.digest_into(&mut h);
        if h.len() >= BLOCK {
            hasher.update(&h);
            h.clear();
        }
    }
    Some(*hasher.update(&h).finalize().as_bytes())
}

/// The key manifest of `stage` given its dependencies' outputs.
pub fn key_manifest(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
) -> Result<KeyManifest, Error> {
    let gathered = gather(env, stage, Reading::All)?;
    manifest_of(env, gathered, stage, deps)
}

/// The key manifest from what [`remembered`] gathered (stamps only): hashes
/// from the stat cache, the inputs it does not know read now, without
/// listing them again.
pub fn manifest_from(
    env: &BuildEnv,
    gathered: Gathered,
    stage: &ResolvedStage,
    deps: &[DepOutput],
) -> Result<KeyManifest, Error> {
    let gathered = gathered
        .known(env)
        .unwrap_or_else(|unread| unread.read_all(env));
    manifest_of(env, gathered, stage, deps)
}

/// The key manifest from what [`gather`] read.
fn manifest_of(
    env: &BuildEnv,
    gathered: Gathered,
    stage: &ResolvedStage,
    deps: &[DepOutput],
) -> Result<KeyManifest, Error> {
    let Gathered {
        external,
        prefixes,
        hashes,
    } = gathered;
    let roots = env.roots();
    let entry = |(path, hash): (&PathBuf, std::io::Result<Stamped>)| {
        let (_, hash) = hash.map_err(|e| Error::Key {
            stage: stage.name.clone(),
            source: vgmake_api::StageError::io(format!("hashing {}", path.display()), e),
        })?;
        let name = match split_plain(path) {
            Some((folder, name)) => {
                format!("path:{}{}", prefixes[folder], String::from_utf8_lossy(name))
            }
            None => format!("path:{}", path_name(path, roots)),
        };
        Ok((name, hash.to_hex().to_string()))
    };
    let entries: Vec<Result<(String, String), Error>> = if external.paths.len() < PARALLEL_FROM {
        external.paths.iter().zip(hashes).map(entry).collect()
    } else {
        use rayon::prelude::*;
        (external.paths.par_iter().zip(hashes))
            .with_min_len(PARALLEL_FROM / 2)
            .map(entry)
            .collect()
    };
    // The first failure in the listing's order names the file, every time.
    let entries: Vec<(String, String)> = entries.into_iter().collect::<Result<_, _>>()?;
    // Built from a list, a BTreeMap sorts once and fills its nodes in bulk.
    let mut ext: BTreeMap<String, String> = entries.into_iter().collect();
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

/// The name a path that is not a folder and a plain name (`scripts/`,
/// `.`) takes in a key: its folder resolved, its own name as listed (so a
/// link is named as listed, not by its target).
fn path_name(path: &Path, roots: &(PathBuf, PathBuf)) -> String {
    let joined;
    let path = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            joined = resolved(parent).join(name);
            &joined
        }
        _ => path,
    };
    key_name(path, &roots.1, &roots.0)
}

/// `path` with its links resolved, or as given where it cannot be.
fn resolved(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Resolves the folders of one stage's inputs, each from its parent's
/// resolution: a folder that is not a link is its resolved parent joined
/// with its name (one `lstat`), where `canonicalize` would `readlink` every
/// component of the path again (650 calls for 120 corpus folders).
/// Keyed by bytes, as `gather`'s prefixes are (`Path`'s hash walks
/// components).
#[derive(Default)]
struct FolderResolver {
    done: FxHashMap<Vec<u8>, PathBuf>,
}

impl FolderResolver {
    fn resolve(&mut self, folder: &Path) -> PathBuf {
        let key = folder.as_os_str().as_bytes();
        if let Some(known) = self.done.get(key) {
            return known.clone();
        }
        let found = match (folder.parent(), folder.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
                // `lstat` in the resolved parent: `songs/.` is named `songs`
                // by `Path`, and a link there must be followed.
                let joined = self.resolve(parent).join(name);
                match fs::symlink_metadata(&joined) {
                    Ok(meta) if !meta.file_type().is_symlink() => joined,
                    _ => resolved(folder),
                }
            }
            _ => resolved(folder),
        };
        self.done.insert(key.to_vec(), found.clone());
        found
    }
}

/// A resolved path as it enters a key: relative to the project or the
/// bundled data (both given canonical), so that two checkouts of one
/// project share keys.
fn key_name(path: &Path, project_dir: &Path, data_dir: &Path) -> String {
    if let Ok(rel) = path.strip_prefix(data_dir) {
        return format!("<data>/{}", rel.display());
    }
    if let Ok(rel) = path.strip_prefix(project_dir) {
        return rel.display().to_string();
    }
    path.display().to_string()
}

/// When a cache hit's output is checked against its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Now: the build hands it over (a target) or it was found damaged once.
    Now,
    /// When a stage that runs reads it: a no-op over a corpus of thousands
    /// of files would otherwise re-stat every copy in scrape's output on
    /// every build, for bytes nothing reads (Bazel's and Nix's stores
    /// trust their outputs the same way; `vgmake verify` re-reads them all).
    WhenRead,
}

/// The output hash cached for `key`: with [`Verify::Now`], only if that
/// output verifies; a damaged output is discarded (and said so through
/// `progress`) so the stage reruns.
pub fn lookup(
    env: &BuildEnv,
    key: &str,
    verify: Verify,
    progress: &dyn Progress,
) -> Option<String> {
    lookup_read(env, key, verify, progress).map(|(output, _)| output)
}

/// [`lookup`], with the record file's metadata (read through the same
/// descriptor) when it is known.
fn lookup_read(
    env: &BuildEnv,
    key: &str,
    verify: Verify,
    progress: &dyn Progress,
) -> Option<(String, Option<fs::Metadata>)> {
    match verify {
        Verify::Now => lookup_store(env.store, key, progress).map(|r| (r.output, None)),
        Verify::WhenRead => env
            .store
            .record_output(key)
            .map(|(output, meta)| (output, Some(meta))),
    }
}

/// [`lookup`] in `store`.
pub fn lookup_store(store: &Store, key: &str, progress: &dyn Progress) -> Option<ActionRecord> {
    let record = store.record(key)?;
    intact(store, key, &record.output, progress).then_some(record)
}

/// Whether the cached `output` of `key` verifies; a damaged one is dropped
/// with its record (and said so) so the stage reruns.
fn intact(store: &Store, key: &str, output: &str, progress: &dyn Progress) -> bool {
    match store.verify_output(output) {
        Ok(_) => true,
        Err(why) => {
            progress.log(&format!(
                "cached result failed verification, rebuilding: {why}"
            ));
            store.discard(key, output);
            false
        }
    }
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What [`probe`] found.
pub enum Probe {
    Hit(Done),
    /// Not in the local cache: the key, for [`execute`].
    Miss(Keyed),
    /// An input must be read (hashed) first: work for a stage thread,
    /// which shows progress and leaves the scheduler free meanwhile. The
    /// listing made so far goes with it.
    Busy(Gathered),
}

/// A stage's key and what it was computed from.
pub struct Keyed {
    pub manifest: KeyManifest,
    pub key: String,
}

impl Keyed {
    fn of(manifest: KeyManifest) -> Keyed {
        let key = manifest.key().to_hex().to_string();
        Keyed { manifest, key }
    }
}

/// The stage's key, and its result when the local cache has it: what a
/// no-op does for every stage, cheap enough for the scheduler's own thread
/// (a thread per cached stage cost more than the lookup). It reads no
/// input the stat cache does not know: that is [`Probe::Busy`].
pub fn probe(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
    verify: Verify,
    progress: &dyn Progress,
) -> Result<Probe, StageFailure> {
    let started = Instant::now();
    // Stamps first: a key the memo knows needs no hash (nor the stat cache).
    let (gathered, digest, remembered) = remembered(env, stage, deps)?;
    let hit = |key: String, output: String| {
        Probe::Hit(Done {
            key,
            output,
            ran: false,
            fetched: false,
            seconds: started.elapsed().as_secs_f64(),
        })
    };
    let memo = &env.store.keys;
    if let Some((key, output)) = remembered
        && (verify == Verify::WhenRead || intact(env.store, &key, &output, progress))
    {
        return Ok(hit(key, output));
    }
    let gathered = match gathered.known(env) {
        Ok(gathered) => gathered,
        Err(unread) => return Ok(Probe::Busy(unread)),
    };
    let keyed = Keyed::of(manifest_of(env, gathered, stage, deps)?);
    let key = keyed.key.clone();
    Ok(match lookup_read(env, &key, verify, progress) {
        Some((output, record)) => {
            // A handed-over hit was read in full (and verified); its record's
            // stamp is taken now, which a rerun in between would only make
            // miss the memo next time.
            let record = record.or_else(|| fs::metadata(env.store.record_path(&key)).ok());
            if let (Some(digest), Some(record)) = (digest, record) {
                memo.remember(digest, &key, &output, &record);
            }
            hit(key, output)
        }
        None => Probe::Miss(keyed),
    })
}

/// The stage's inputs by their stamps, the key memo's digest of them, and
/// the key and output the memo remembers for it (not verified): a no-op's
/// whole look at its inputs (`probe`, `vgmake status`).
#[allow(clippy::type_complexity)]
pub fn remembered(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
) -> Result<(Gathered, Option<[u8; 32]>, Option<(String, String)>), Error> {
    let gathered = gather(env, stage, Reading::Stamps)?;
    let digest = memo_digest(env, &gathered, stage, deps);
    let found = digest
        .as_ref()
        .and_then(|d| env.store.keys.get(d, |key| env.store.record_path(key)))
        .map(|found| (keymemo::hex(&found.key), keymemo::hex(&found.output)));
    Ok((gathered, digest, found))
}

/// What [`probe`] left for [`execute`].
pub enum Prepared {
    /// The key.
    Keyed(Keyed),
    /// The inputs listed, some not read yet.
    Listed(Gathered),
    /// Nothing (`--force` skips the probe).
    Nothing,
}

/// Brings `stage` up to date. `force` runs it even when cached; `verify`
/// says when a cache hit is checked; `prepared` is what [`probe`] found
/// already. Before it runs, the outputs it reads are verified:
/// a damaged one fails with [`StageFailure::DamagedInput`], which the
/// scheduler answers by rebuilding that dependency.
#[allow(clippy::too_many_arguments)]
pub fn execute(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
    prepared: Prepared,
    force: bool,
    refresh: bool,
    verify: Verify,
    progress: &StageLog,
    key_locks: &KeyLocks,
) -> Result<Done, StageFailure> {
    let started = Instant::now();
    let Keyed { manifest, key } = match prepared {
        Prepared::Keyed(keyed) => keyed,
        Prepared::Listed(gathered) => {
            Keyed::of(manifest_of(env, gathered.read_all(env), stage, deps)?)
        }
        Prepared::Nothing => Keyed::of(key_manifest(env, stage, deps)?),
    };
    // Another variant computing the same key runs first; this one then finds its result.
    let key_lock = key_locks.lock_for(&key);
    let _running = key_lock.lock().unwrap_or_else(|e| e.into_inner());
    if !force && let Some(output) = lookup(env, &key, verify, progress) {
        return Ok(Done {
            key,
            output,
            ran: false,
            fetched: false,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if !force
        && let Some(remote) = env.remote
        && let Some(record) = remote.fetch_stage(env.store, &key, progress)
    {
        return Ok(Done {
            key,
            output: record.output,
            ran: false,
            fetched: true,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let verified = verify_inputs(env, deps)?;
    if stage.executor == Executor::Slurm
        && let Some(slurm) = env.slurm
    {
        return slurm.run(env, stage, deps, manifest, &key, progress, started);
    }
    run_fresh(
        env, stage, deps, verified, manifest, &key, refresh, progress, started,
    )
}

/// Runs `stage` here, in a fresh staging folder, and commits its result
/// (a build's local stages, and a Slurm job on its node): `verified` is
/// what [`verify_inputs`] found.
#[allow(clippy::too_many_arguments)]
pub fn run_fresh(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
    verified: VerifiedInputs,
    manifest: KeyManifest,
    key: &str,
    refresh: bool,
    progress: &StageLog,
    started: Instant,
) -> Result<Done, StageFailure> {
    let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
    let staging = env.store.tmp_dir().join(format!(
        "{}-{}-{}-{n}",
        stage.name,
        &key[..12],
        std::process::id()
    ));
    let result = run_and_commit(
        env, stage, deps, verified, manifest, key, &staging, refresh, progress, started,
    );
    let _ = crate::fsutil::remove_tree(&staging);
    result
}

#[allow(clippy::too_many_arguments)]
fn run_and_commit(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
    verified: VerifiedInputs,
    manifest: KeyManifest,
    key: &str,
    staging: &Path,
    refresh: bool,
    progress: &StageLog,
    started: Instant,
) -> Result<Done, StageFailure> {
    let out_dir = staging.join("out");
    let temp_dir = staging.join("tmp");
    fs::create_dir_all(&out_dir)
        .and_then(|_| fs::create_dir_all(&temp_dir))
        .map_err(|e| {
            StageFailure::io(format!("creating staging folder {}", staging.display()), e)
        })?;
    // The whole log goes to a file kept beside the record; the record keeps
    // the last lines. A log that cannot be written costs only the file.
    let _ = progress.keep_full_log(&staging.join("log.txt"));
    let inputs = inputs_of(env, stage, deps, verified);
    let state_id = manifest.state_identity(stage.kind.state_ignores());
    let state_dir = env
        .store
        .state_dir(stage.kind.name(), state_id.to_hex().as_str());
    let memo_dir = env.store.memo_dir(stage.kind.name(), stage.kind.version());
    if let Some(remote) = env.remote {
        remote.fetch_state(env.store, &state_dir, progress);
    }
    let run = StageRun {
        name: &stage.name,
        kind: stage.kind,
        params: &stage.params,
        inputs: &inputs,
        out_dir: &out_dir,
        temp_dir: &temp_dir,
        project_dir: env.project_dir,
        data_dir: env.data_dir,
        memo_dir: &memo_dir,
        state_dir: &state_dir,
        remote: env.remote,
        progress,
        cancel: env.cancel,
        refresh,
        threads: env.threads,
    };
    let outcome = run_stage(&run);
    if let Some(remote) = env.remote {
        // Finished or stopped: the state lets another machine resume.
        remote.push_state(env.store, &state_dir);
    }
    let outcome = outcome?;
    let ran_for = started.elapsed().as_secs_f64();
    let metrics = fs::read(out_dir.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let (output, _) = env.store.commit_output(&out_dir).map_err(|e| {
        StageFailure::io(
            format!("storing the output in {}", env.store.root.display()),
            e,
        )
    })?;
    let seconds = started.elapsed().as_secs_f64();
    progress.log(&format!(
        "ran in {ran_for:.3} s, stored in {:.3} s",
        seconds - ran_for
    ));
    if let Some(log) = progress.finish_full_log()
        && let Err(e) = env.store.keep_log(key, &log)
    {
        progress.log(&format!("warning: cannot keep the full log: {e}"));
    }
    let record = ActionRecord {
        key: key.to_string(),
        stage: stage.name.clone(),
        manifest,
        output: output.clone(),
        seconds,
        finished: unix_now(),
        log: progress.lines(),
        memo_keys: outcome.memo_keys,
        metrics,
        measurements: outcome.measurements,
        state: Some(format!("{}/{}", stage.kind.name(), state_id.to_hex())),
        ran_on: env.ran_on.clone(),
    };
    env.store
        .write_record(&record)
        .map_err(|e| StageFailure::io("writing the action record", e))?;
    if let Some(remote) = env.remote {
        remote.push_stage(env.store, &record, &memo_dir);
    }
    Ok(Done {
        key: key.to_string(),
        output,
        ran: true,
        fetched: false,
        seconds,
    })
}

/// The manifests of a run's dependencies' outputs, in the order of its
/// `deps`, as [`verify_inputs`] found them; only it makes one, so a run
/// cannot be handed manifests that were not checked in this process.
pub struct VerifiedInputs(Vec<TreeManifest>);

/// Checks every dependency's output against its manifest, and returns the
/// manifests: a stage never reads bytes that were not verified in this
/// process. [`run_fresh`] takes what it returns.
pub(crate) fn verify_inputs(
    env: &BuildEnv,
    deps: &[DepOutput],
) -> Result<VerifiedInputs, StageFailure> {
    deps.iter()
        .map(|dep| {
            env.store
                .verify_output(&dep.output)
                .map_err(|damage| StageFailure::DamagedInput {
                    stage: dep.stage.clone(),
                    damage,
                })
        })
        .collect::<Result<_, _>>()
        .map(VerifiedInputs)
}

/// The dependencies' output folders, each with the slot of the stage's
/// declared inputs it fills and its files' hashes, from `verified` (their
/// manifests as [`verify_inputs`] found them: not scanned again).
fn inputs_of(
    env: &BuildEnv,
    stage: &ResolvedStage,
    deps: &[DepOutput],
    verified: VerifiedInputs,
) -> Vec<Input> {
    assert_eq!(deps.len(), verified.0.len(), "a manifest per dependency");
    let mut inputs = Vec::new();
    for (dep, manifest) in deps.iter().zip(verified.0) {
        let slot = stage
            .deps
            .iter()
            .position(|d| *d == dep.stage)
            .and_then(|i| stage.slots.get(i).copied().flatten());
        inputs.push(Input {
            stage: dep.stage.clone(),
            kind: dep.kind.clone(),
            slot,
            dir: env.store.output_dir(&dep.output),
            hashes: file_hashes(manifest),
        });
    }
    inputs
}

/// The files' hashes of a verified manifest (folders have none).
fn file_hashes(manifest: TreeManifest) -> FileHashes {
    FileHashes::new(
        manifest
            .files
            .into_iter()
            .filter_map(|f| {
                let hash = blake3::Hash::from_hex(&f.hash).ok()?;
                Some((f.path, hash))
            })
            .collect(),
    )
}

/// One mutex per stage key in flight, so that two variants sharing a stage
/// run it once.
#[derive(Default)]
pub struct KeyLocks {
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl KeyLocks {
    pub fn lock_for(&self, key: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

/// The `out/<variant>/<stage>` link path.
pub fn out_link(project_dir: &Path, variant: &str, stage: &str) -> PathBuf {
    project_dir.join("out").join(variant).join(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_resolve_as_canonicalize_does_through_links() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("real/a/b")).unwrap();
        fs::create_dir_all(root.join("other/c")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("other/c"), root.join("real/a/to_c")).unwrap();
        let mut resolver = FolderResolver::default();
        for rel in [
            "real/a/b",
            "real/a",
            "link/a/b",
            "link/a/to_c",
            "real/a/to_c",
            "link/../real/a",
            "real/./a/b",
            "link/.",
            "real/a/to_c/.",
            "missing/x",
        ] {
            let path = root.join(rel);
            assert_eq!(resolver.resolve(&path), resolved(&path), "{rel}");
        }
    }
}
