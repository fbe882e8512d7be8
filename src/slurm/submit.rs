//! The build side: turns stages that missed the cache into jobs, gathers
//! the variants of one stage into one job array, follows each task in the
//! queue and its output, and hands back the committed result.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vgmake_api::Progress;

use super::SlurmError;
use super::cluster::{self, Queued};
use super::job::{JobInput, JobRemote, JobSpec};
use super::options::SlurmOptions;
use super::protocol::Event;
use crate::error::StageFailure;
use crate::executor::{BuildEnv, DepOutput, Done, Verify, lookup};
use crate::hashing::KeyManifest;
use crate::pipeline::ResolvedStage;
use crate::stage_log::StageLog;

/// Stages of one name and settings that become ready within this of each
/// other go into one array (a sweep's variants finish their shared
/// upstream stages milliseconds apart).
const GATHER_QUIET: Duration = Duration::from_millis(300);
const GATHER_MAX: Duration = Duration::from_secs(3);
/// Tasks per array: Slurm's default `MaxArraySize` is 1001 (indices 0-1000).
const MAX_ARRAY_TASKS: usize = 1000;

/// Every task this process submitted that is still in the queue, for the
/// second Ctrl-C, which exits at once ([`cancel_all`]).
static IN_QUEUE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Cancels every job this build submitted that has not finished (one
/// `scancel`); the job ids, for a message.
pub fn cancel_all() -> Vec<String> {
    let jobs = std::mem::take(&mut *IN_QUEUE.lock().unwrap_or_else(|e| e.into_inner()));
    if !jobs.is_empty() {
        let _ = std::process::Command::new("scancel")
            .args(&jobs)
            .stderr(std::process::Stdio::null())
            .status();
    }
    jobs
}
/// The queue is read at most this often, whatever the number of tasks.
const QUEUE_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The first look at a task comes this soon; the pause then grows to `poll_seconds`.
const FIRST_POLL: Duration = Duration::from_millis(100);
const DEFAULT_POLL: f64 = 2.0;
/// A queue that cannot be read for this long loses the job.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(120);

/// The Slurm side of one build.
pub struct Slurm {
    /// `cache/jobs`: job scripts and, with a shared FS, their output.
    jobs_dir: PathBuf,
    /// This binary, which the nodes run unless `vgmake` says otherwise.
    vgmake: PathBuf,
    /// The remote the build uses, for jobs without a shared FS.
    remote: Option<JobRemote>,
    /// Preflight results, by settings (one check per build and settings).
    checked: Mutex<HashMap<String, Result<(), SlurmError>>>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    queue: Mutex<QueueView>,
}

/// Members of one array to be, and then its job id.
struct Group {
    specs: Mutex<Vec<JobSpec>>,
    last_join: Mutex<Instant>,
    submitted: Mutex<Option<Result<Submitted, SlurmError>>>,
    ready: Condvar,
}

#[derive(Clone)]
struct Submitted {
    array: String,
    /// Where task `i`'s output goes (`{task}` replaced).
    output: String,
    at: Instant,
}

struct QueueView {
    read_at: Option<Instant>,
    /// The last answer, an error included: with a dead controller every
    /// task would otherwise wait out its own 30 s deadline in turn.
    jobs: Result<HashMap<String, Queued>, SlurmError>,
}

impl Default for QueueView {
    fn default() -> Self {
        QueueView {
            read_at: None,
            jobs: Ok(HashMap::new()),
        }
    }
}

impl Slurm {
    pub fn new(store_root: &Path, remote: Option<JobRemote>) -> Slurm {
        Slurm {
            jobs_dir: store_root.join("jobs"),
            vgmake: std::env::current_exe().unwrap_or_else(|_| "vgmake".into()),
            remote,
            checked: Default::default(),
            groups: Default::default(),
            queue: Default::default(),
        }
    }

    /// Runs `stage` (a cache miss) as a Slurm job and returns its result.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        env: &BuildEnv,
        stage: &ResolvedStage,
        deps: &[DepOutput],
        manifest: KeyManifest,
        key: &str,
        progress: &StageLog,
        started: Instant,
    ) -> Result<Done, StageFailure> {
        let options = &stage.slurm;
        self.preflight(options)?;
        let spec = self.spec(env, stage, deps, manifest, key, progress)?;
        if env.cancel.load(Ordering::Relaxed) {
            return Err(StageFailure::Cancelled);
        }
        let (submitted, task) = self.join_array(&stage.name, options, spec, env)?;
        let job = format!("{}_{task}", submitted.array);
        let output = PathBuf::from(submitted.output.replace("{task}", &task.to_string()));
        progress.log(&format!(
            "submitted as slurm job {job} ({})",
            options.sbatch_args().join(" ")
        ));
        IN_QUEUE.lock().unwrap().push(job.clone());
        let followed = self.follow(env, &job, &output, submitted.at, options, progress);
        IN_QUEUE.lock().unwrap().retain(|j| *j != job);
        followed?;
        // A shared FS may show the job's commit a moment late (NFS
        // attribute caches): look a few times before calling it missing.
        let mut record = None;
        for attempt in 0..5 {
            record = match (options.shared_fs(), env.remote) {
                (true, _) => lookup(env, key, Verify::Now, progress),
                (false, Some(remote)) => remote
                    .fetch_stage(env.store, key, progress)
                    .map(|r| r.output),
                (false, None) => None,
            };
            if record.is_some() || attempt == 4 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200 << attempt));
        }
        match record {
            Some(stored) => {
                let _ = fs::remove_file(&output);
                Ok(Done {
                    key: key.to_string(),
                    output: stored,
                    ran: true,
                    fetched: false,
                    seconds: started.elapsed().as_secs_f64(),
                })
            }
            None => Err(self.failure(&job, &output).into()),
        }
    }

    fn preflight(&self, options: &SlurmOptions) -> Result<(), SlurmError> {
        let id = serde_json::to_string(options).unwrap_or_default();
        let mut checked = self.checked.lock().unwrap();
        checked
            .entry(id)
            .or_insert_with(|| {
                cluster::preflight(options)?;
                if !options.shared_fs() && self.remote.is_none() {
                    return Err(SlurmError::NeedsRemote);
                }
                Ok(())
            })
            .clone()
    }

    /// The job's spec; without a shared FS, its inputs made sure to be on
    /// the remote first.
    fn spec(
        &self,
        env: &BuildEnv,
        stage: &ResolvedStage,
        deps: &[DepOutput],
        manifest: KeyManifest,
        key: &str,
        progress: &StageLog,
    ) -> Result<JobSpec, SlurmError> {
        let options = &stage.slurm;
        let shared = options.shared_fs();
        if !shared {
            if let Some(path) = manifest.external.keys().find(|k| k.starts_with("path:")) {
                return Err(SlurmError::ReadsProjectFiles {
                    path: path["path:".len()..].to_string(),
                });
            }
            let remote = env.remote.ok_or(SlurmError::NeedsRemote)?;
            for dep in deps {
                if remote.has_record(&dep.key).as_deref() == Some(dep.output.as_str()) {
                    continue;
                }
                let record = env.store.record(&dep.key);
                let pushed = record.map(|r| {
                    let kind_dir = env.store.memo_dir(&r.manifest.kind, r.manifest.version);
                    remote.push_now(env.store, &r, &kind_dir)
                });
                match pushed {
                    Some(Ok(())) => progress.log(&format!(
                        "pushed input `{}` to {} for the job",
                        dep.stage,
                        remote.url()
                    )),
                    Some(Err(detail)) => {
                        return Err(SlurmError::PushInput {
                            stage: dep.stage.clone(),
                            detail,
                        });
                    }
                    None => {
                        return Err(SlurmError::PushInput {
                            stage: dep.stage.clone(),
                            detail: "its record is not in the local cache".into(),
                        });
                    }
                }
            }
        }
        let slot_of = |dep: &DepOutput| {
            stage
                .deps
                .iter()
                .position(|d| *d == dep.stage)
                .and_then(|i| stage.slots.get(i).copied().flatten())
                .map(str::to_string)
        };
        Ok(JobSpec {
            stage: stage.name.clone(),
            key: key.to_string(),
            manifest,
            inputs: deps
                .iter()
                .map(|d| JobInput {
                    stage: d.stage.clone(),
                    kind: d.kind.clone(),
                    slot: slot_of(d),
                    key: d.key.clone(),
                    output: d.output.clone(),
                })
                .collect(),
            threads: options.cpus() as usize,
            project_dir: env.project_dir.to_path_buf(),
            data_dir: env.data_dir.to_path_buf(),
            cache_dir: shared.then(|| env.store.root.clone()),
            node_cache: (!shared).then(|| {
                options.node_cache.clone().map_or_else(
                    || std::env::temp_dir().join("vgmake-node-cache"),
                    PathBuf::from,
                )
            }),
            remote: self.remote.clone(),
        })
    }

    /// Adds `spec` to the array being gathered for this stage and settings
    /// (or starts one, and submits it when no one else joins for a moment);
    /// the submitted array and this spec's task number.
    fn join_array(
        &self,
        stage: &str,
        options: &SlurmOptions,
        spec: JobSpec,
        env: &BuildEnv,
    ) -> Result<(Submitted, usize), SlurmError> {
        let id = format!(
            "{stage}\n{}",
            serde_json::to_string(options).unwrap_or_default()
        );
        let (group, task, leader) = {
            let mut groups = self.groups.lock().unwrap();
            match groups.get(&id) {
                Some(group) if group.specs.lock().unwrap().len() < MAX_ARRAY_TASKS => {
                    let mut specs = group.specs.lock().unwrap();
                    specs.push(spec);
                    *group.last_join.lock().unwrap() = Instant::now();
                    (group.clone(), specs.len() - 1, false)
                }
                // None yet, or a full one: this spec starts the next array.
                _ => {
                    let group = Arc::new(Group {
                        specs: Mutex::new(vec![spec]),
                        last_join: Mutex::new(Instant::now()),
                        submitted: Mutex::new(None),
                        ready: Condvar::new(),
                    });
                    groups.insert(id.clone(), group.clone());
                    (group, 0, true)
                }
            }
        };
        if leader {
            let opened = Instant::now();
            loop {
                let quiet = group.last_join.lock().unwrap().elapsed();
                if quiet >= GATHER_QUIET
                    || opened.elapsed() >= GATHER_MAX
                    || env.cancel.load(Ordering::Relaxed)
                {
                    break;
                }
                std::thread::sleep(
                    GATHER_QUIET - quiet.min(GATHER_QUIET) + Duration::from_millis(5),
                );
            }
            // Closed: a stage ready from now on starts the next array.
            self.groups.lock().unwrap().remove(&id);
            let specs = std::mem::take(&mut *group.specs.lock().unwrap());
            // Whatever happens, the members waiting below hear of it.
            let result = if env.cancel.load(Ordering::Relaxed) {
                Err(SlurmError::Cancelled)
            } else {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.submit(stage, options, &specs)
                }))
                .unwrap_or_else(|_| {
                    Err(SlurmError::Submit {
                        detail: "internal error (panic) while writing the job script".into(),
                    })
                })
            };
            *group.submitted.lock().unwrap() = Some(result);
            group.ready.notify_all();
        }
        let mut submitted = group.submitted.lock().unwrap();
        while submitted.is_none() {
            submitted = group.ready.wait(submitted).unwrap();
        }
        submitted.clone().unwrap().map(|s| (s, task))
    }

    /// Writes the job script (every task's spec inside it, so a node needs
    /// no file of ours) and submits it as one array.
    fn submit(
        &self,
        stage: &str,
        options: &SlurmOptions,
        specs: &[JobSpec],
    ) -> Result<Submitted, SlurmError> {
        static ARRAYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = self.jobs_dir.join(format!(
            "{stage}-{}-{}-{}",
            crate::lock::unix_now(),
            std::process::id(),
            ARRAYS.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |e: std::io::Error| SlurmError::Submit {
            detail: format!("writing the job script in {}: {e}", dir.display()),
        };
        fs::create_dir_all(&dir).map_err(io)?;
        let vgmake = options
            .vgmake
            .clone()
            .unwrap_or_else(|| self.vgmake.display().to_string());
        let mut script = format!(
            "#!/bin/sh\n# vgmake: stage `{stage}`, {} task(s); written by `vgmake build`.\nspec() {{\n  case \"$SLURM_ARRAY_TASK_ID\" in\n",
            specs.len()
        );
        for (i, spec) in specs.iter().enumerate() {
            let json = serde_json::to_string(spec).map_err(|e| SlurmError::Submit {
                detail: format!("the job spec cannot be written: {e}"),
            })?;
            script.push_str(&format!(
                "  {i}) cat <<'VGMAKE_SPEC'\n{json}\nVGMAKE_SPEC\n  ;;\n"
            ));
        }
        script.push_str(&format!(
            "  *) echo \"vgmake: no task $SLURM_ARRAY_TASK_ID in this array\" >&2; exit 2 ;;\n  esac\n}}\nspec | exec {} run-stage --spec -\n",
            shell_quote(&vgmake)
        ));
        let path = dir.join("job.sh");
        fs::write(&path, script).map_err(io)?;
        // With a shared FS the output lands beside the script, where the
        // build tails it; without one, in the node's /tmp.
        let output = if options.shared_fs() {
            dir.join("%a.out").display().to_string()
        } else {
            std::env::temp_dir()
                .join("vgmake-job-%A_%a.out")
                .display()
                .to_string()
        };
        let array = cluster::submit(&path, specs.len(), &output, stage, options)?;
        Ok(Submitted {
            output: output.replace("%A", &array).replace("%a", "{task}"),
            array,
            at: Instant::now(),
        })
    }

    /// Follows `job` until it leaves the queue, replaying its output into
    /// `progress`; Ctrl-C cancels it.
    fn follow(
        &self,
        env: &BuildEnv,
        job: &str,
        output: &Path,
        submitted: Instant,
        options: &SlurmOptions,
        progress: &StageLog,
    ) -> Result<(), StageFailure> {
        let longest = Duration::from_secs_f64(options.poll_seconds.unwrap_or(DEFAULT_POLL));
        let mut pause = FIRST_POLL.min(longest);
        let mut tail = Tail::default();
        let mut last_state = String::new();
        let mut unreachable_since: Option<Instant> = None;
        loop {
            if env.cancel.load(Ordering::Relaxed) {
                return Err(self.cancel(job, progress));
            }
            tail.replay(output, progress);
            match self.queued(job, submitted) {
                Ok(Some(q)) => {
                    unreachable_since = None;
                    if q.state != last_state {
                        let reason = q.reason.trim_matches(['(', ')']);
                        let line = match q.state.as_str() {
                            "PENDING" if reason.is_empty() || reason == "None" => {
                                format!("slurm job {job}: pending")
                            }
                            "PENDING" => format!("slurm job {job}: pending ({reason})"),
                            "RUNNING" => format!("slurm job {job}: running on {}", q.reason),
                            other => format!("slurm job {job}: {}", other.to_lowercase()),
                        };
                        progress.message(&line);
                        progress.log(&line);
                        last_state = q.state;
                    }
                }
                Ok(None) => {
                    tail.replay(output, progress);
                    return Ok(());
                }
                Err(e) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= UNREACHABLE_LIMIT {
                        return Err(SlurmError::Lost {
                            job: job.to_string(),
                            detail: e.to_string(),
                        }
                        .into());
                    }
                }
            }
            // In short slices, so Ctrl-C is heard at once whatever `poll_seconds` says.
            let wake = Instant::now() + pause;
            while Instant::now() < wake && !env.cancel.load(Ordering::Relaxed) {
                std::thread::sleep((wake - Instant::now()).min(Duration::from_millis(50)));
            }
            pause = (pause.mul_f64(1.5)).min(longest);
        }
    }

    /// `job`'s place in the queue, `None` once it left. One `squeue` serves
    /// every task of the build asking within `QUEUE_MIN_INTERVAL`; a view
    /// read before the job was submitted is never trusted for it.
    fn queued(&self, job: &str, submitted: Instant) -> Result<Option<Queued>, SlurmError> {
        let mut view = self.queue.lock().unwrap();
        let stale = view
            .read_at
            .is_none_or(|at| at < submitted || at.elapsed() >= QUEUE_MIN_INTERVAL);
        if stale {
            let read_at = Instant::now();
            view.jobs = cluster::queue();
            view.read_at = Some(read_at);
        }
        match &view.jobs {
            Ok(jobs) => Ok(jobs.get(job).cloned()),
            Err(e) => Err(e.clone()),
        }
    }

    /// Ctrl-C: cancels the job and waits (a while) until it left the queue.
    fn cancel(&self, job: &str, progress: &StageLog) -> StageFailure {
        match cluster::cancel(job) {
            Ok(()) => progress.log(&format!("cancelled slurm job {job}")),
            Err(e) => progress.log(&format!("cannot cancel slurm job {job}: {e}")),
        }
        let cancelled_at = Instant::now();
        let deadline = cancelled_at + Duration::from_secs(30);
        while Instant::now() < deadline {
            match self.queued(job, cancelled_at) {
                Ok(None) => break,
                Ok(Some(_)) => std::thread::sleep(Duration::from_millis(100)),
                Err(_) => break,
            }
        }
        StageFailure::Cancelled
    }

    /// Why a job that left the queue left no result: its state as the
    /// controller remembers it and the last lines of its output.
    fn failure(&self, job: &str, output: &Path) -> SlurmError {
        let ended = cluster::ended(job).unwrap_or_default();
        let text = fs::read_to_string(output).unwrap_or_default();
        let lines: Vec<&str> = text.lines().map(strip_protocol).collect();
        let tail = &lines[lines.len().saturating_sub(8)..];
        let log = if tail.is_empty() {
            format!("; no output at {}", output.display())
        } else {
            format!(
                "; last lines of {}:\n    {}",
                output.display(),
                tail.join("\n    ")
            )
        };
        SlurmError::JobFailed {
            job: job.to_string(),
            state: if ended.state.is_empty() {
                "(no longer known to the controller)".into()
            } else {
                ended.state
            },
            exit_code: if ended.exit_code.is_empty() {
                "unknown".into()
            } else {
                ended.exit_code
            },
            reason: match ended.reason.as_str() {
                "" | "None" => String::new(),
                r => format!(", {r}"),
            },
            log,
        }
    }
}

impl From<SlurmError> for StageFailure {
    fn from(e: SlurmError) -> Self {
        match e {
            SlurmError::Cancelled => StageFailure::Cancelled,
            e => StageFailure::Slurm(e),
        }
    }
}

/// A job's output file read as it grows: complete lines only.
#[derive(Default)]
struct Tail {
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    fn replay(&mut self, path: &Path, progress: &dyn Progress) {
        let Ok(mut file) = fs::File::open(path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut bytes = Vec::new();
        let Ok(n) = file.read_to_end(&mut bytes) else {
            return;
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            Event::parse(&line).replay(progress);
        }
    }
}

/// A line of the job's output as a person reads it.
fn strip_protocol(line: &str) -> &str {
    match Event::parse(line) {
        Event::Log(l) | Event::Message(l) => l,
        _ => line,
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
