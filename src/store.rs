//! The content-addressed cache under `cache/`:
//!
//! ```text
//! actions/<key>.json      action record: key manifest -> output hash, time, log
//! outputs/<hash>/         a stage output folder, read-only, named by its Merkle hash
//! manifests/<hash>.json   the file list of that folder (for verification and `why`)
//! memo/<kind>-v<n>/       per-item memo of map stages (memo.rs)
//! state/<kind>/<id>/      resumable stage state (training checkpoints), named
//!                         by the stage key without the parameters the kind's
//!                         state ignores
//! refs/<project>/<variant>.json  what each stage of a variant last built, per
//!                         project (a hash of its folder: a shared cache
//!                         keeps projects apart)
//! tmp/                    staging folders (anything here is garbage after a crash)
//! builds.jsonl            one line per build (history.rs)
//! statcache.bin           file stamps -> hashes (format in statcache.rs)
//! keymemo.bin             input stamps -> keys and results (keymemo.rs)
//! listings.bin            folder stamps -> listings (listcache.rs)
//! LOCK                    the writer lock
//! ```
//!
//! Order of a commit: output folder complete in tmp -> manifest written ->
//! folder renamed into outputs/ -> record written last (and synced). A
//! crash at any point leaves at worst an unreferenced folder, never a record
//! that lies. A power cut may also lose what the page cache held (the
//! output's files and its manifest are not synced): such an output reads as
//! damaged where it is verified, and its stage runs again.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::Damage;
use crate::fsutil::{self, write_atomic};
use crate::hashing::{KeyManifest, TreeManifest};
use crate::history::{self, HistoryEntry};
use crate::keymemo::KeyMemo;
use crate::listcache::ListCache;
use crate::statcache::StatCache;

/// What the cache remembers about one run of a stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionRecord {
    pub key: String,
    pub stage: String,
    pub manifest: KeyManifest,
    pub output: String,
    pub seconds: f64,
    /// Unix time the run finished.
    pub finished: u64,
    /// The stage's log lines (the last 2,000).
    pub log: Vec<String>,
    /// Memo entries the run read or wrote (kept by `gc` with the record).
    #[serde(default)]
    pub memo_keys: Vec<String>,
    /// The output's `metrics.json`, if it wrote one.
    #[serde(default)]
    pub metrics: Option<serde_json::Value>,
    /// What the stage measured while it ran (tokens/s, wall time, memory):
    /// kept here, outside the hashed output.
    #[serde(default)]
    pub measurements: BTreeMap<String, f64>,
    /// Its state folder, `<kind>/<id>` under `state/` (kept by `gc` with
    /// the record: raising `steps` resumes from it).
    #[serde(default)]
    pub state: Option<String>,
    /// Where it ran when not in the build itself: `slurm job 12_3 on node7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_on: Option<String>,
}

/// A stage's entry in `refs/<variant>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRef {
    pub key: String,
    pub output: String,
}

pub struct Store {
    pub root: PathBuf,
    /// Names this project's folder of refs (a hash of its path).
    project_id: String,
    pub stats: StatCache,
    /// Keys and results remembered by the stamps of their inputs.
    pub keys: KeyMemo,
    /// Folder listings remembered by the folders' stamps.
    pub folders: ListCache,
    refs: Mutex<RefsCache>,
    commit_lock: Mutex<()>,
}

/// Refs read once per command and written when they change, at most once
/// a second during a build and at its end ([`Store::flush_refs`]; also on
/// drop): a build of 20,000 stages does not rewrite a 20,000-entry file
/// 20,000 times.
#[derive(Default)]
struct RefsCache {
    variants: std::collections::HashMap<String, BTreeMap<String, StageRef>>,
    dirty: std::collections::BTreeSet<String>,
    flushed: Option<std::time::Instant>,
}

const REFS_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Store {
    /// Opens (creating) the cache at `root`, for the project in the folder
    /// above it (a cache shared through a link keeps each project's refs
    /// apart).
    pub fn open(root: &Path) -> io::Result<Store> {
        let project = root
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()?;
        let project_id =
            blake3::hash(project.as_os_str().as_encoded_bytes()).to_hex()[..16].to_string();
        for dir in [
            "actions",
            "outputs",
            "manifests",
            "memo",
            "state",
            "refs",
            "tmp",
        ] {
            fs::create_dir_all(root.join(dir))?;
        }
        let root = root.canonicalize()?;
        let stats = StatCache::load(&root.join("statcache.bin"));
        let keys = KeyMemo::load(&root.join("keymemo.bin"));
        let folders = ListCache::load(&root.join("listings.bin"));
        Ok(Store {
            root,
            project_id,
            stats,
            keys,
            folders,
            refs: Mutex::new(RefsCache::default()),
            commit_lock: Mutex::new(()),
        })
    }

    /// Opens the cache only if it exists (read-only commands).
    pub fn open_existing(root: &Path) -> Option<Store> {
        if root.join("actions").is_dir() {
            Store::open(root).ok()
        } else {
            None
        }
    }

    pub fn output_dir(&self, hash: &str) -> PathBuf {
        self.root.join("outputs").join(hash)
    }
    fn manifest_path(&self, hash: &str) -> PathBuf {
        self.root.join("manifests").join(format!("{hash}.json"))
    }
    pub fn record_path(&self, key: &str) -> PathBuf {
        self.root
            .join("actions")
            .join(&key[..2])
            .join(format!("{key}.json"))
    }
    /// The full log of the run that made the record for `key`.
    pub fn log_path(&self, key: &str) -> PathBuf {
        self.root
            .join("logs")
            .join(&key[..2])
            .join(format!("{key}.log"))
    }

    /// Moves a finished run's full log beside its record (before the record
    /// is written: a record never names a log that is not there yet).
    pub fn keep_log(&self, key: &str, log: &Path) -> io::Result<()> {
        let target = self.log_path(key);
        fs::create_dir_all(target.parent().expect("logs live in a shard folder"))?;
        fs::rename(log, target)
    }

    pub fn memo_root(&self) -> PathBuf {
        self.root.join("memo")
    }
    pub fn memo_dir(&self, kind: &str, version: u32) -> PathBuf {
        self.memo_root().join(format!("{kind}-v{version}"))
    }
    /// The state folder of a stage of `kind` whose state identity is `id`.
    pub fn state_dir(&self, kind: &str, id: &str) -> PathBuf {
        self.root.join("state").join(kind).join(id)
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Deletes staging folders left by a crashed or killed build. Only called
    /// under the lock, so none of them belongs to a live build.
    pub fn clean_tmp(&self) -> io::Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(self.tmp_dir())? {
            let staging = entry?.path();
            crate::survivor::stop(&staging.join("tmp"));
            fsutil::remove_tree(&staging)?;
            n += 1;
        }
        Ok(n)
    }

    /// The record for `key`, if present and readable.
    pub fn record(&self, key: &str) -> Option<ActionRecord> {
        let bytes = fs::read(self.record_path(key)).ok()?;
        serde_json::from_slice::<ActionRecord>(&bytes)
            .ok()
            .filter(|r| r.key == key)
    }

    /// The output hash of the record for `key`, without building the rest
    /// of it: a record keeps its key manifest, which for a stage over a
    /// corpus names every file (a megabyte of JSON the lookup only skims).
    /// Also returns the record file's metadata, taken from the descriptor
    /// it was read through (the key memo stamps the record by it).
    pub fn record_output(&self, key: &str) -> Option<(String, fs::Metadata)> {
        #[derive(Deserialize)]
        struct Head {
            key: String,
            output: String,
        }
        let mut file = fs::File::open(self.record_path(key)).ok()?;
        let meta = file.metadata().ok()?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        io::Read::read_to_end(&mut file, &mut bytes).ok()?;
        serde_json::from_slice::<Head>(&bytes)
            .ok()
            .filter(|r| r.key == key)
            .map(|r| (r.output, meta))
    }

    pub fn remove_record(&self, key: &str) {
        let _ = fs::remove_file(self.record_path(key));
        let _ = fs::remove_file(self.log_path(key));
    }

    /// Every record in the cache.
    pub fn records(&self) -> Vec<ActionRecord> {
        let mut out = Vec::new();
        let Ok(shards) = fs::read_dir(self.root.join("actions")) else {
            return out;
        };
        for shard in shards.flatten() {
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if let Some(key) = name.strip_suffix(".json") {
                    if let Some(r) = self.record(key) {
                        out.push(r);
                    }
                }
            }
        }
        out
    }

    pub fn tree_manifest(&self, hash: &str) -> Option<TreeManifest> {
        serde_json::from_slice(&fs::read(self.manifest_path(hash)).ok()?).ok()
    }

    /// Checks that `outputs/<hash>` holds exactly what its manifest says,
    /// and returns the manifest. Files whose stamps are unchanged are not
    /// re-read (stat cache).
    pub fn verify_output(&self, hash: &str) -> Result<TreeManifest, Damage> {
        let manifest = self
            .tree_manifest(hash)
            .ok_or_else(|| Damage::NoManifest(hash.to_string()))?;
        if manifest.hash().to_hex().as_str() != hash {
            return Err(Damage::ManifestMismatch(hash.to_string()));
        }
        let dir = self.output_dir(hash);
        let folder = dir.display().to_string();
        if !dir.is_dir() {
            return Err(Damage::Missing(folder));
        }
        let actual =
            TreeManifest::scan(&dir, &self.stats).map_err(|source| Damage::Unreadable {
                folder: folder.clone(),
                source,
            })?;
        if actual != manifest {
            let what = actual.diff_summary(&manifest);
            return Err(Damage::Modified { folder, what });
        }
        Ok(manifest)
    }

    /// Re-reads every file of `outputs/<hash>`, trusting no stat-cache
    /// entry, and checks it against its manifest; returns the bytes read. A
    /// damaged output's stat-cache entries are forgotten, so the next build
    /// reads it again too (and rebuilds it).
    pub fn verify_output_fully(&self, hash: &str) -> Result<u64, Damage> {
        let manifest = self
            .tree_manifest(hash)
            .ok_or_else(|| Damage::NoManifest(hash.to_string()))?;
        let dir = self.output_dir(hash);
        let folder = dir.display().to_string();
        if !dir.is_dir() {
            return Err(Damage::Missing(folder));
        }
        let actual =
            TreeManifest::scan(&dir, &StatCache::none()).map_err(|source| Damage::Unreadable {
                folder: folder.clone(),
                source,
            })?;
        if actual != manifest || manifest.hash().to_hex().as_str() != hash {
            self.stats.forget_under(&dir);
            let what = actual.diff_summary(&manifest);
            return Err(Damage::Modified { folder, what });
        }
        Ok(actual.total_bytes())
    }

    /// Every file in the state folders (`state/<kind>/<id>/`), seals aside.
    pub fn state_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_none_or(|e| e != "b3") {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root.join("state"), &mut out);
        out.sort();
        out
    }

    /// Moves a finished staging folder into the cache and returns its hash.
    /// An identical output already cached is kept and the staging copy dropped.
    pub fn commit_output(&self, staging: &Path) -> io::Result<(String, TreeManifest)> {
        // A file hard-linked from outside (a command stage's `ln`) would make
        // the user's file read-only and part of the cache: copy it first.
        fsutil::unshare_hard_links(staging)?;
        fsutil::make_read_only(staging)?;
        let manifest = TreeManifest::scan(staging, &self.stats)?;
        let hash = manifest.hash().to_hex().to_string();
        let target = self.output_dir(&hash);
        self.stats.forget_under(staging);
        // Two stages of one build (different keys) may produce the same
        // output at once: one moves it in, the other then finds it there.
        // Slurm jobs commit into the same cache from other processes (other
        // machines on a shared FS): a file lock orders them too.
        let _one_at_a_time = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        let _across_processes = crate::lock::exclusive(&self.root.join("commit.lock"))?;
        if target.is_dir() && self.verify_output(&hash).is_ok() {
            fsutil::remove_tree(staging)?;
            return Ok((hash, manifest));
        }
        // A damaged copy of the same output is replaced by the fresh one.
        fsutil::remove_tree(&target)?;
        // Not synced: the output's files it lists are not either (a power
        // cut can tear them all the same), and a torn or lost manifest
        // reads as damage (it must hash to the output's name) wherever the
        // output is verified: `verify`, and a build that reads the output,
        // which rebuilds it (tests/hostile.rs). Writing it took 0.5-0.6 ms
        // with the fsync, 0.11 ms without.
        fsutil::write_atomic_unsynced(
            &self.manifest_path(&hash),
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        fs::rename(staging, &target)?;
        // Prime the stat cache with the files at their final place (a rename
        // keeps inode and mtime; chmod changed ctime before the scan).
        for f in manifest.files.iter().filter(|f| !f.path.ends_with('/')) {
            let hash = blake3::Hash::from_hex(&f.hash).expect("hashes in a manifest are hex");
            self.stats.remember(&target.join(&f.path), &hash)?;
        }
        Ok((hash, manifest))
    }

    /// Writes the record: the last step of a commit.
    pub fn write_record(&self, record: &ActionRecord) -> io::Result<()> {
        write_atomic(
            &self.record_path(&record.key),
            &serde_json::to_vec_pretty(record)?,
        )
    }

    /// A removed or damaged output: drop its record so the stage reruns.
    pub fn discard(&self, key: &str, output: &str) {
        self.remove_record(key);
        let dir = self.output_dir(output);
        self.stats.forget_under(&dir);
        let _ = fsutil::remove_tree(&dir);
        let _ = fs::remove_file(self.manifest_path(output));
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// `refs/<project id>/<variant>.json`.
    pub fn refs_path(&self, variant: &str) -> PathBuf {
        self.root
            .join("refs")
            .join(&self.project_id)
            .join(format!("{variant}.json"))
    }

    /// What each stage of `variant` last built (empty when unreadable:
    /// for commands that show; `gc` reads them with [`Store::all_refs`]).
    pub fn refs(&self, variant: &str) -> BTreeMap<String, StageRef> {
        let mut cache = self.refs.lock().unwrap();
        self.cached_refs(&mut cache, variant).clone()
    }

    fn cached_refs<'c>(
        &self,
        cache: &'c mut RefsCache,
        variant: &str,
    ) -> &'c mut BTreeMap<String, StageRef> {
        cache
            .variants
            .entry(variant.to_string())
            .or_insert_with(|| {
                fs::read(self.refs_path(variant))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default()
            })
    }

    /// Writes the refs that changed since the last write.
    pub fn flush_refs(&self) -> io::Result<()> {
        let mut cache = self.refs.lock().unwrap();
        self.flush_locked(&mut cache)
    }

    fn flush_locked(&self, cache: &mut RefsCache) -> io::Result<()> {
        for variant in std::mem::take(&mut cache.dirty) {
            let path = self.refs_path(&variant);
            fs::create_dir_all(path.parent().expect("refs live in a folder"))?;
            write_atomic(
                &path,
                &serde_json::to_vec_pretty(&cache.variants[&variant])?,
            )?;
        }
        cache.flushed = Some(std::time::Instant::now());
        Ok(())
    }

    /// The refs of every variant of every project using this cache, as
    /// (project id, variant, refs); an error names a file it cannot read.
    pub fn all_refs(&self) -> Result<Vec<(String, String, BTreeMap<String, StageRef>)>, String> {
        let mut out = Vec::new();
        let dir = self.root.join("refs");
        for project in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let project_id = project.file_name().to_string_lossy().into_owned();
            for file in fs::read_dir(project.path()).into_iter().flatten().flatten() {
                let path = file.path();
                let Some(variant) = path.file_stem().map(|s| s.to_string_lossy().into_owned())
                else {
                    continue;
                };
                let refs = fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                out.push((project_id.clone(), variant, refs));
            }
        }
        Ok(out)
    }

    /// Every variant of this project that has refs.
    pub fn ref_variants(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("refs").join(&self.project_id))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names
    }

    /// Records that `stage` of `variant` now stands at `r`.
    pub fn set_ref(&self, variant: &str, stage: &str, r: StageRef) -> io::Result<()> {
        let mut cache = self.refs.lock().unwrap();
        let refs = self.cached_refs(&mut cache, variant);
        if refs.get(stage) == Some(&r) {
            return Ok(()); // a no-op build writes nothing
        }
        refs.insert(stage.to_string(), r);
        cache.dirty.insert(variant.to_string());
        if cache
            .flushed
            .is_none_or(|t| t.elapsed() >= REFS_FLUSH_EVERY)
        {
            self.flush_locked(&mut cache)?;
        }
        Ok(())
    }

    /// Appends one build to the history.
    pub fn append_history(&self, entry: &HistoryEntry) -> io::Result<()> {
        history::append(&self.root.join("builds.jsonl"), entry)
    }

    /// The build history, oldest first; an error names a line it cannot read.
    pub fn history(&self) -> Result<Vec<HistoryEntry>, String> {
        history::read(&self.root.join("builds.jsonl"))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.flush_refs();
    }
}
