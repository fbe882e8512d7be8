//! Runs the selected stages in dependency order, independent ones in
//! parallel (`-j`). A failed stage skips its dependents; independent
//! branches still finish.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use crate::error::{Error, StageFailure};
use crate::executor::{
    BuildEnv, DepOutput, Done, KeyLocks, Prepared, Probe, Verify, execute, out_link, probe,
};
use crate::graph::StageGraph;
use crate::outcome::{StageResult, Status};
use crate::pipeline::{Executor, Resolved, ResolvedStage};
use crate::report::Display;
use crate::stage_log::StageLog;
use crate::store::StageRef;

pub struct BuildOptions {
    pub targets: Vec<String>,
    pub jobs: usize,
    /// Stages to run even when cached.
    pub force: BTreeSet<String>,
    /// Source stages to revalidate (implies force).
    pub refresh: BTreeSet<String>,
}

enum State {
    Pending,
    Running,
    Finished(Status, Option<DepOutput>),
}

/// One stage of one variant.
struct Node<'a> {
    variant: &'a str,
    stage: &'a ResolvedStage,
    /// Indices of the nodes it depends on (same variant).
    deps: Vec<usize>,
    /// A named target, or a stage nothing selected depends on: the build
    /// hands its output over, so a cache hit is verified at once. Other
    /// hits are verified when a stage that runs reads them.
    handover: bool,
}

/// Why a stage thread came back without a result.
enum Failure {
    /// A dependency's cached output failed verification when this stage
    /// was about to read it: rebuild the dependency, then this stage.
    DamagedInput {
        dep: String,
        /// The output hash that failed.
        output: String,
        message: String,
    },
    Error(String),
}

/// Builds the selected stages of every variant in `variants` in one
/// schedule. Stages of different variants with the same key run once: the
/// second waits for the first and finds its result in the cache. Returns one
/// result per (variant, stage), in the order they finished.
pub fn build(
    env: &BuildEnv,
    variants: &[Resolved],
    opts: &BuildOptions,
    display: Arc<dyn Display>,
) -> Result<Vec<StageResult>, Error> {
    let mut nodes: Vec<Node> = Vec::new();
    for resolved in variants {
        let order = selection(resolved, &opts.targets)?;
        let first = nodes.len();
        let index: std::collections::HashMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), first + i))
            .collect();
        let handed_over = handed_over(&order, &opts.targets);
        for stage in order {
            let deps = stage.deps.iter().map(|d| index[d.as_str()]).collect();
            nodes.push(Node {
                variant: &resolved.variant,
                stage,
                deps,
                handover: handed_over.contains(stage.name.as_str()),
            });
        }
    }
    let multi = variants.len() > 1;
    let mut states: Vec<State> = nodes.iter().map(|_| State::Pending).collect();
    let mut results = Vec::new();
    let (tx, rx) = mpsc::channel::<(usize, Result<Done, Failure>)>();
    // Nodes whose cached output was found damaged once: rebuilt, and their
    // next hit verified at once (so a damage that cannot be removed fails
    // instead of looping).
    let mut damaged = vec![false; nodes.len()];
    // Results found on this thread (cache hits), settled before waiting.
    let mut settled_here: Vec<(usize, Result<Done, Failure>)> = Vec::new();
    let key_locks = KeyLocks::default();
    let mut running = 0usize;
    let mut running_here = 0usize;
    let mut on_cluster_nodes = vec![false; nodes.len()];

    std::thread::scope(|scope| {
        loop {
            let cancelled = env.cancel.load(Ordering::Relaxed);
            // Settle nodes whose dependencies failed, then start ready ones.
            for (i, node) in nodes.iter().enumerate() {
                if !matches!(states[i], State::Pending) {
                    continue;
                }
                let blocked = node.deps.iter().find(|d| {
                    matches!(
                        states[**d],
                        State::Finished(Status::Failed | Status::Skipped, _)
                    )
                });
                if blocked.is_some() || cancelled {
                    let why = match blocked {
                        Some(d) => format!("dependency `{}` did not build", nodes[*d].stage.name),
                        None => "cancelled".to_string(),
                    };
                    let r = result_of(node, multi, Status::Skipped, None, 0.0, Some(why));
                    display.finished(&r);
                    results.push(r);
                    states[i] = State::Finished(Status::Skipped, None);
                    continue;
                }
                let deps: Option<Vec<DepOutput>> = node
                    .deps
                    .iter()
                    .map(|d| match &states[*d] {
                        State::Finished(_, Some(out)) => Some(out.clone()),
                        _ => None,
                    })
                    .collect();
                let Some(deps) = deps else { continue };
                // A Slurm stage waits on the cluster, not on a core here.
                let on_cluster = env.slurm.is_some() && node.stage.executor == Executor::Slurm;
                if !on_cluster && running_here >= opts.jobs.max(1) {
                    continue;
                }
                states[i] = State::Running;
                let stage = node.stage;
                let label = label(node, multi);
                let force = opts.force.contains(&stage.name) || opts.refresh.contains(&stage.name);
                let refresh = opts.refresh.contains(&stage.name);
                let verify = if node.handover || damaged[i] {
                    Verify::Now
                } else {
                    Verify::WhenRead
                };
                let log = StageLog::new(&label, display.clone());
                // The key and the local cache first, here: on a no-op every
                // stage ends there, and a thread each cost more than that.
                let prepared = match (!force).then(|| probe(env, stage, &deps, verify, &log)) {
                    Some(Ok(Probe::Hit(done))) => {
                        settled_here.push((i, Ok(done)));
                        continue;
                    }
                    Some(Ok(Probe::Miss(keyed))) => Prepared::Keyed(keyed),
                    Some(Ok(Probe::Busy(listed))) => Prepared::Listed(listed),
                    Some(Err(e)) => {
                        let message = with_log_tail(e.to_string(), &log.lines());
                        settled_here.push((i, Err(Failure::Error(message))));
                        continue;
                    }
                    None => Prepared::Nothing,
                };
                running += 1;
                running_here += usize::from(!on_cluster);
                on_cluster_nodes[i] = on_cluster;
                let tx = tx.clone();
                let display = display.clone();
                let key_locks = &key_locks;
                scope.spawn(move || {
                    // Announce only stages that really run; a cache hit is instant.
                    let announce = DelayedStart::new(&label, display.clone());
                    let result = execute(
                        env, stage, &deps, prepared, force, refresh, verify, &log, key_locks,
                    );
                    announce.cancel();
                    let result = result.map_err(|e: StageFailure| match e {
                        StageFailure::DamagedInput { ref stage, .. } => Failure::DamagedInput {
                            dep: stage.clone(),
                            output: deps
                                .iter()
                                .find(|d| d.stage == *stage)
                                .map(|d| d.output.clone())
                                .unwrap_or_default(),
                            message: e.to_string(),
                        },
                        e => Failure::Error(with_log_tail(e.to_string(), &log.lines())),
                    });
                    let _ = tx.send((i, result));
                });
            }
            let (i, result) = match settled_here.pop() {
                Some(found) => found,
                None if running == 0 => break,
                None => {
                    let (i, result) = rx.recv().expect("a stage thread always reports");
                    running -= 1;
                    running_here -= usize::from(!on_cluster_nodes[i]);
                    (i, result)
                }
            };
            let node = &nodes[i];
            let r = match result {
                Ok(done) => {
                    let upstream_changed = node.deps.iter().any(|d| {
                        matches!(states[*d], State::Finished(Status::Ran | Status::Cutoff, _))
                    });
                    let status = match (done.ran, upstream_changed) {
                        (true, _) => Status::Ran,
                        (false, _) if done.fetched => Status::Fetched,
                        (false, true) => Status::Cutoff,
                        (false, false) => Status::Cached,
                    };
                    publish(
                        env,
                        node.variant,
                        &node.stage.name,
                        &done.key,
                        &done.output,
                        &*display,
                    );
                    let dep = DepOutput {
                        stage: node.stage.name.clone(),
                        kind: node.stage.kind.name().to_string(),
                        key: done.key.clone(),
                        output: done.output.clone(),
                    };
                    states[i] = State::Finished(status, Some(dep));
                    let message =
                        (status == Status::Cutoff).then(|| "upstream output unchanged".to_string());
                    let mut r = result_of(
                        node,
                        multi,
                        status,
                        Some(done.output),
                        done.seconds,
                        message,
                    );
                    r.key = Some(done.key);
                    r
                }
                Err(Failure::DamagedInput {
                    dep,
                    output,
                    message,
                }) => {
                    let d = node
                        .deps
                        .iter()
                        .copied()
                        .find(|d| nodes[*d].stage.name == dep);
                    let current = d.and_then(|d| match &states[d] {
                        State::Finished(_, Some(out)) => Some(Some(out.clone())),
                        State::Finished(_, None) => None,
                        _ => Some(None),
                    });
                    match (d, current) {
                        // Still the output that failed, not yet rebuilt: its
                        // hit was not verified (nothing read it then). Check
                        // again under its key (another variant may be
                        // rebuilding it), drop it, build it again, then this.
                        (Some(d), Some(Some(out))) if out.output == output && !damaged[d] => {
                            let key_lock = key_locks.lock_for(&out.key);
                            let _same_key = key_lock.lock().unwrap_or_else(|e| e.into_inner());
                            if env.store.verify_output(&out.output).is_err() {
                                env.store.discard(&out.key, &out.output);
                            }
                            damaged[d] = true;
                            display.note(&format!(
                                "note: {message}; rebuilding `{}`",
                                label(&nodes[d], multi)
                            ));
                            let (variant, name) = (nodes[d].variant, &nodes[d].stage.name);
                            results.retain(|r: &StageResult| {
                                !(r.variant == variant && &r.name == name)
                            });
                            states[d] = State::Pending;
                            states[i] = State::Pending;
                            continue;
                        }
                        // Being rebuilt for a sibling reader, or rebuilt
                        // already: this stage waits for (or takes) the new one.
                        (Some(_), Some(None)) => {
                            states[i] = State::Pending;
                            continue;
                        }
                        (Some(_), Some(Some(out))) if out.output != output => {
                            states[i] = State::Pending;
                            continue;
                        }
                        _ => {
                            states[i] = State::Finished(Status::Failed, None);
                            result_of(node, multi, Status::Failed, None, 0.0, Some(message))
                        }
                    }
                }
                Err(Failure::Error(e)) => {
                    states[i] = State::Finished(Status::Failed, None);
                    result_of(node, multi, Status::Failed, None, 0.0, Some(e))
                }
            };
            display.finished(&r);
            results.push(r);
        }
    });
    Ok(results)
}

/// The stage name, prefixed with its variant when several are built.
fn label(node: &Node, multi: bool) -> String {
    if multi {
        format!("{}/{}", node.variant, node.stage.name)
    } else {
        node.stage.name.clone()
    }
}

fn result_of(
    node: &Node,
    multi: bool,
    status: Status,
    output: Option<String>,
    seconds: f64,
    message: Option<String>,
) -> StageResult {
    StageResult {
        name: node.stage.name.clone(),
        variant: node.variant.to_string(),
        label: label(node, multi),
        status,
        key: None,
        output,
        seconds,
        message,
    }
}

/// Appends the stage's last log lines to its error, unless already there.
fn with_log_tail(error: String, lines: &[String]) -> String {
    let tail = &lines[lines.len().saturating_sub(5)..];
    if tail.is_empty() || error.contains(&tail.join("\n")) {
        error
    } else {
        format!("{error}\n  last log lines:\n    {}", tail.join("\n    "))
    }
}

/// The selected stages of `resolved` (the targets and what they need, every
/// stage when there are none), dependencies first: the one selection walk
/// shared by `build`, `status`, `why` and `--dry-run`.
pub fn selection<'a>(
    resolved: &'a Resolved,
    targets: &[String],
) -> Result<Vec<&'a ResolvedStage>, Error> {
    let graph = StageGraph::new(
        resolved
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.deps.as_slice())),
    );
    let by_name: std::collections::HashMap<&str, &ResolvedStage> = resolved
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    Ok(graph
        .selection(targets)?
        .iter()
        .map(|name| by_name[name.as_str()])
        .collect())
}

/// The stages of a selection whose outputs a build hands over: the named
/// targets, and every stage nothing else selected depends on. Their cache
/// hits are verified at once; the others' when a stage that runs reads them.
pub fn handed_over<'a>(order: &[&'a ResolvedStage], targets: &[String]) -> BTreeSet<&'a str> {
    let needed: BTreeSet<&str> = order
        .iter()
        .flat_map(|s| s.deps.iter().map(String::as_str))
        .collect();
    order
        .iter()
        .map(|s| s.name.as_str())
        .filter(|name| targets.iter().any(|t| t == name) || !needed.contains(name))
        .collect()
}

/// Points `out/<variant>/<stage>` and the variant's ref at the new output.
fn publish(
    env: &BuildEnv,
    variant: &str,
    stage: &str,
    key: &str,
    output: &str,
    display: &dyn Display,
) {
    let link = out_link(env.project_dir, variant, stage);
    let target = env.store.output_dir(output);
    let target = relative_to(&target, link.parent().unwrap()).unwrap_or(target);
    // Something that is not our link stands there (a folder a user copied
    // over it): move it aside rather than leave stale contents in place.
    let is_link = std::fs::symlink_metadata(&link).map(|m| m.file_type().is_symlink());
    if let Ok(false) = is_link {
        let aside = link.with_file_name(format!("{stage}.moved-{}", crate::lock::unix_now()));
        match std::fs::rename(&link, &aside) {
            Ok(()) => display.note(&format!(
                "note: {} was not vgmake's link; moved it to {}",
                link.display(),
                aside.display()
            )),
            Err(e) => display.note(&format!(
                "warning: {} is not vgmake's link and cannot be moved aside ({e}); remove it",
                link.display()
            )),
        }
    }
    if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path())
        && let Err(e) = crate::fsutil::replace_symlink(&target, &link)
    {
        display.note(&format!("warning: cannot update {}: {e}", link.display()));
    }
    if let Err(e) = env.store.set_ref(
        variant,
        stage,
        StageRef {
            key: key.to_string(),
            output: output.to_string(),
        },
    ) {
        display.note(&format!(
            "warning: cannot record the result of `{stage}`: {e}"
        ));
    }
}

/// `target` relative to folder `from`, when both are under a common root.
fn relative_to(target: &Path, from: &Path) -> Option<std::path::PathBuf> {
    let from = from
        .canonicalize()
        .ok()
        .or_else(|| Some(from.to_path_buf()))?;
    let target_parts: Vec<_> = target.components().collect();
    let from_parts: Vec<_> = from.components().collect();
    let common = target_parts
        .iter()
        .zip(&from_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common <= 1 {
        return None;
    }
    let mut rel = std::path::PathBuf::new();
    for _ in common..from_parts.len() {
        rel.push("..");
    }
    for part in &target_parts[common..] {
        rel.push(part);
    }
    Some(rel)
}

/// Shows a stage as running only if it takes longer than a moment, so that
/// cache hits do not flash a bar or print a "running" line.
struct DelayedStart {
    done: Arc<std::sync::Mutex<bool>>,
}

impl DelayedStart {
    fn new(stage: &str, display: Arc<dyn Display>) -> Self {
        let done = Arc::new(std::sync::Mutex::new(false));
        let flag = done.clone();
        let stage = stage.to_string();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            // Holding the lock while announcing: `cancel` cannot return
            // before the announcement, so it never lands after the result.
            let mut done = flag.lock().unwrap();
            if !*done {
                display.started(&stage);
                *done = true;
            }
        });
        DelayedStart { done }
    }
    fn cancel(self) {
        *self.done.lock().unwrap() = true;
    }
}
