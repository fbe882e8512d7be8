//! Runs the selected stages in dependency order, independent ones in
//! parallel (`-j`). A failed stage skips its dependents; independent
//! branches still finish.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use crate::executor::{BuildEnv, DepOutput, StageLog, execute, out_link};
use crate::graph::StageGraph;
use crate::pipeline::Resolved;
use crate::report::{Display, StageResult, Status};
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

/// Builds the selected stages; returns one result per stage, in the order
/// they finished.
pub fn build(
    env: &BuildEnv,
    resolved: &Resolved,
    opts: &BuildOptions,
    display: Arc<dyn Display>,
) -> Result<Vec<StageResult>, String> {
    let graph = StageGraph::of_resolved(&resolved.stages);
    let selected = graph.select(&opts.targets)?;
    let order: Vec<String> = graph
        .topological_order()
        .into_iter()
        .filter(|s| selected.contains(s))
        .collect();
    let mut states: BTreeMap<String, State> =
        order.iter().map(|s| (s.clone(), State::Pending)).collect();
    let mut results = Vec::new();
    let (tx, rx) = mpsc::channel::<(String, Result<crate::executor::Done, String>)>();
    let mut running = 0usize;

    std::thread::scope(|scope| {
        loop {
            let cancelled = env.cancel.load(Ordering::Relaxed);
            // Settle stages whose dependencies failed, then start ready ones.
            for name in &order {
                if !matches!(states[name], State::Pending) {
                    continue;
                }
                let stage = resolved.stage(name).unwrap();
                let blocked = stage.deps.iter().find(|d| {
                    matches!(
                        states[*d],
                        State::Finished(Status::Failed | Status::Skipped, _)
                    )
                });
                if let Some(dep) = blocked {
                    let r = skipped(name, format!("dependency `{dep}` did not build"));
                    display.finished(&r);
                    results.push(r);
                    states.insert(name.clone(), State::Finished(Status::Skipped, None));
                    continue;
                }
                if cancelled {
                    let r = skipped(name, "cancelled".into());
                    display.finished(&r);
                    results.push(r);
                    states.insert(name.clone(), State::Finished(Status::Skipped, None));
                    continue;
                }
                let deps: Option<Vec<DepOutput>> = stage
                    .deps
                    .iter()
                    .map(|d| match &states[d] {
                        State::Finished(_, Some(out)) => Some(out.clone()),
                        _ => None,
                    })
                    .collect();
                let Some(deps) = deps else { continue };
                if running >= opts.jobs.max(1) {
                    continue;
                }
                running += 1;
                states.insert(name.clone(), State::Running);
                let tx = tx.clone();
                let display = display.clone();
                let force = opts.force.contains(name) || opts.refresh.contains(name);
                let refresh = opts.refresh.contains(name);
                scope.spawn(move || {
                    let log = StageLog::new(&stage.name, display.clone());
                    // Announce only stages that will really run; a cache hit is instant.
                    let announce = DelayedStart::new(&stage.name, display.clone());
                    let result = execute(env, stage, &deps, force, refresh, &log);
                    announce.cancel();
                    let result = result.map_err(|e| {
                        let tail: Vec<String> = log
                            .lines()
                            .into_iter()
                            .rev()
                            .take(5)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect();
                        if tail.is_empty() || e.contains(&tail.join("\n")) {
                            e
                        } else {
                            format!("{e}\n  last log lines:\n    {}", tail.join("\n    "))
                        }
                    });
                    let _ = tx.send((stage.name.clone(), result));
                });
            }
            if running == 0 {
                break;
            }
            let (name, result) = rx.recv().expect("a stage thread always reports");
            running -= 1;
            let stage = resolved.stage(&name).unwrap();
            let r = match result {
                Ok(done) => {
                    let status = if done.ran {
                        Status::Ran
                    } else if stage.deps.iter().any(|d| {
                        matches!(states[d], State::Finished(Status::Ran | Status::Cutoff, _))
                    }) {
                        Status::Cutoff
                    } else {
                        Status::Cached
                    };
                    publish(
                        env,
                        &resolved.variant,
                        &name,
                        &done.key,
                        &done.output,
                        &*display,
                    );
                    let dep = DepOutput {
                        stage: name.clone(),
                        kind: stage.kind.name().to_string(),
                        output: done.output.clone(),
                    };
                    states.insert(name.clone(), State::Finished(status, Some(dep)));
                    let message =
                        (status == Status::Cutoff).then(|| "upstream output unchanged".to_string());
                    StageResult {
                        name: name.clone(),
                        status,
                        key: Some(done.key),
                        output: Some(done.output),
                        seconds: done.seconds,
                        message,
                    }
                }
                Err(e) => {
                    states.insert(name.clone(), State::Finished(Status::Failed, None));
                    StageResult {
                        name: name.clone(),
                        status: Status::Failed,
                        key: None,
                        output: None,
                        seconds: 0.0,
                        message: Some(e),
                    }
                }
            };
            display.finished(&r);
            results.push(r);
        }
    });
    Ok(results)
}

fn skipped(name: &str, why: String) -> StageResult {
    StageResult {
        name: name.to_string(),
        status: Status::Skipped,
        key: None,
        output: None,
        seconds: 0.0,
        message: Some(why),
    }
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
    if let Err(e) = crate::fsutil::replace_symlink(&target, &link) {
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
