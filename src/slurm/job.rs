//! The node side: `vgmake run-stage --spec FILE` runs one stage of a build
//! from its [`JobSpec`], through the same staging and commit protocol as a
//! local run, so the result is the one a local run of the key gives.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vgmake_api::{Inputs, Params};

use super::protocol::JobProgress;
use crate::executor::{BuildEnv, DepOutput, run_fresh};
use crate::hashing::KeyManifest;
use crate::pipeline::{Executor, ResolvedStage};
use crate::remote::CacheConfig;
use crate::stage_log::StageLog;
use crate::store::Store;

/// Everything a job needs to run one stage: written by the build into the
/// job script, so a node needs no copy of pipeline.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    pub stage: String,
    pub key: String,
    /// The key's manifest: kind, version, every parameter, the inputs' hashes.
    pub manifest: KeyManifest,
    pub inputs: Vec<JobInput>,
    pub threads: usize,
    pub project_dir: PathBuf,
    pub data_dir: PathBuf,
    /// With a shared file system: the project's cache. Without: `None`,
    /// and the job works in `node_cache`.
    pub cache_dir: Option<PathBuf>,
    pub node_cache: Option<PathBuf>,
    /// The remote cache the build uses (and the job, without a shared FS).
    pub remote: Option<JobRemote>,
}

/// A finished dependency, named by its key and output hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInput {
    pub stage: String,
    pub kind: String,
    pub slot: Option<String>,
    pub key: String,
    pub output: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRemote {
    pub url: String,
    pub cache: CacheConfig,
}

/// SIGTERM (scancel, preemption, the end of the time limit) and SIGINT stop
/// the stage at its next item, like Ctrl-C in a build.
static CANCEL: AtomicBool = AtomicBool::new(false);

/// `vgmake run-stage`: exit 0 once the result is committed (and pushed,
/// without a shared FS), 1 when the stage failed, 130 when stopped.
pub fn run_stage_command(host: &'static crate::Host, spec: &Path) -> ExitCode {
    let _ = ctrlc::set_handler(|| CANCEL.store(true, Ordering::SeqCst));
    let display: Arc<dyn crate::report::Display> = Arc::new(JobProgress);
    let log = StageLog::new("", display.clone());
    let spec = match read_spec(spec) {
        Ok(s) => s,
        Err(e) => return fail(&log, &e, 2),
    };
    match run_job(host, &spec, &log, display) {
        Ok(line) => {
            vgmake_api::Progress::log(&log, &line);
            ExitCode::SUCCESS
        }
        Err(JobError::Cancelled) => fail(&log, "stopped (SIGTERM or SIGINT)", 130),
        Err(JobError::Failed(e)) => fail(&log, &e, 1),
    }
}

enum JobError {
    Cancelled,
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError::Failed(e.to_string())
    }
}

fn fail(log: &StageLog, message: &str, code: u8) -> ExitCode {
    vgmake_api::Progress::log(log, &format!("error: {message}"));
    eprintln!("vgmake run-stage: {message}");
    ExitCode::from(code)
}

fn read_spec(path: &Path) -> Result<JobSpec, String> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    read.map_err(|e| format!("reading the job spec {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the job spec {} is not valid: {e}", path.display()))
}

fn run_job(
    host: &'static crate::Host,
    spec: &JobSpec,
    log: &StageLog,
    display: Arc<dyn crate::report::Display>,
) -> Result<String, JobError> {
    let started = Instant::now();
    let manifest = &spec.manifest;
    let kind = host.kinds.find(&manifest.kind).ok_or_else(|| {
        format!(
            "this vgmake has no stage kind `{}`: the nodes must run the build's vgmake (`[executors.slurm] vgmake`)",
            manifest.kind
        )
    })?;
    if kind.version() != manifest.version {
        return Err(JobError::Failed(format!(
            "kind `{}` is version {} here but {} in the build: the nodes must run the build's vgmake (`[executors.slurm] vgmake`)",
            manifest.kind,
            kind.version(),
            manifest.version
        )));
    }
    if manifest.key().to_hex().as_str() != spec.key {
        return Err(JobError::Failed(
            "the job spec's manifest does not give its key".into(),
        ));
    }
    let cache_dir = match (&spec.cache_dir, &spec.node_cache) {
        (Some(shared), _) => shared.clone(),
        (None, Some(node)) => node.clone(),
        (None, None) => return Err(JobError::Failed("the job spec names no cache".into())),
    };
    std::fs::create_dir_all(&cache_dir)
        .map_err(|e| format!("creating {}: {e}", cache_dir.display()))?;
    let store =
        Store::open(&cache_dir).map_err(|e| format!("opening {}: {e}", cache_dir.display()))?;
    // The stage gets the cores the job asked for, not the node's.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(spec.threads.max(1))
        .build_global();
    let shared = spec.cache_dir.is_some();
    let remote = match &spec.remote {
        Some(r) => crate::remote::Remote::open(
            &crate::remote::Settings {
                // Without a shared FS the build reads the result there.
                file: &CacheConfig {
                    push: if shared { r.cache.push } else { Some(true) },
                    ..r.cache.clone()
                },
                flag: Some(&r.url),
                no_remote: false,
            },
            &store.root,
            Box::new(move |m: &str| display.note(m)),
        )?,
        None => None,
    };
    if !shared && remote.is_none() {
        return Err(JobError::Failed(super::SlurmError::NeedsRemote.to_string()));
    }
    let ran_on = ran_on();
    // A requeued job whose first run already committed has nothing to do.
    if let Some(record) = crate::executor::lookup_store(&store, &spec.key, log) {
        if let Some(remote) = &remote
            && !shared
        {
            push_now(remote, &store, &record, kind)?;
        }
        return Ok(format!("already built (output {})", &record.output[..12]));
    }
    let mut deps = Vec::new();
    for input in &spec.inputs {
        if store.verify_output(&input.output).is_err() {
            let fetched = match (&remote, shared) {
                (Some(remote), false) => remote.fetch_stage(&store, &input.key, log),
                _ => None,
            };
            if fetched.as_ref().map(|r| r.output.as_str()) != Some(input.output.as_str()) {
                return Err(JobError::Failed(format!(
                    "input `{}` (output {}) is not in {}",
                    input.stage,
                    &input.output[..12.min(input.output.len())],
                    if shared {
                        "the project's cache".to_string()
                    } else {
                        "the remote cache".to_string()
                    }
                )));
            }
        }
        deps.push(DepOutput {
            stage: input.stage.clone(),
            kind: input.kind.clone(),
            key: input.key.clone(),
            output: input.output.clone(),
        });
    }
    let slots = spec
        .inputs
        .iter()
        .map(|i| match (kind.inputs(), &i.slot) {
            (Inputs::Slots(slots), Some(name)) => {
                slots.iter().find(|s| s.name == name).map(|s| s.name)
            }
            _ => None,
        })
        .collect();
    let stage = ResolvedStage {
        name: spec.stage.clone(),
        kind,
        deps: spec.inputs.iter().map(|i| i.stage.clone()).collect(),
        slots,
        params: Params::new(manifest.params.clone()),
        executor: Executor::Local,
        slurm: Default::default(),
    };
    let env = BuildEnv {
        store: &store,
        project_dir: &spec.project_dir,
        data_dir: &spec.data_dir,
        cancel: &CANCEL,
        threads: spec.threads,
        remote: remote.as_ref(),
        slurm: None,
        ran_on: Some(ran_on.clone()),
        resolved_roots: Default::default(),
    };
    // The job may have waited hours in the queue: inputs read from the
    // project (scripts, a corpus folder) must still be what the key says,
    // or the result would be stored under a key it does not belong to.
    if !manifest.external.is_empty() {
        let now = crate::executor::key_manifest(&env, &stage, &deps)?;
        if now.key().to_hex().as_str() != spec.key {
            return Err(JobError::Failed(
                "the stage's project files changed after it was submitted; run the build again"
                    .into(),
            ));
        }
    }
    // The inputs as the key says (run_fresh does not verify them).
    let verified = crate::executor::verify_inputs(&env, &deps);
    let done = match verified.and_then(|verified| {
        run_fresh(
            &env,
            &stage,
            &deps,
            verified,
            manifest.clone(),
            &spec.key,
            false,
            log,
            started,
        )
    }) {
        Ok(done) => done,
        Err(crate::error::StageFailure::Cancelled) => return Err(JobError::Cancelled),
        Err(e) => return Err(JobError::Failed(e.to_string())),
    };
    if let Some(remote) = &remote {
        // Wait for the push: without a shared FS the build reads the result there.
        let _ = remote.finish();
        if !shared && remote.left_unpushed() > 0 {
            return Err(JobError::Failed(format!(
                "the result could not be pushed to {}",
                remote.url()
            )));
        }
    }
    Ok(format!(
        "committed output {} ({ran_on}) in {:.3} s",
        &done.output[..12],
        done.seconds
    ))
}

fn push_now(
    remote: &crate::remote::Remote,
    store: &Store,
    record: &crate::store::ActionRecord,
    kind: &dyn vgmake_api::StageKind,
) -> Result<(), String> {
    remote.push_stage(store, record, &store.memo_dir(kind.name(), kind.version()));
    let _ = remote.finish();
    match remote.left_unpushed() {
        0 => Ok(()),
        _ => Err(format!(
            "the result could not be pushed to {}",
            remote.url()
        )),
    }
}

/// `slurm job 12_3 on node7`, from the job's environment.
fn ran_on() -> String {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let job = match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(array), Some(task)) => format!("{array}_{task}"),
        _ => var("SLURM_JOB_ID").unwrap_or_else(|| "?".into()),
    };
    let node = var("SLURMD_NODENAME").unwrap_or_else(|| "?".into());
    format!("slurm job {job} on {node}")
}
