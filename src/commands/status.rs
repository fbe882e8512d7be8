//! `vgmake status`, `vgmake why` and `vgmake build --dry-run`.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use crate::cli::Common;
use crate::commands::usage_error;
use crate::error::{Context, Error};
use crate::executor::BuildEnv;
use crate::outcome::Status;
use crate::pipeline::{Executor, Resolved};
use crate::plan::{PlanState, StagePlan, plan};
use crate::project::Project;
use crate::store::Store;

fn plans(
    project: &Project,
    resolved: &Resolved,
    targets: &[String],
) -> Result<(Store, Vec<StagePlan>), Error> {
    let store = Store::open(&project.cache_dir)
        .context(|| format!("cannot open the cache at {}", project.cache_dir.display()))?;
    let cancel = AtomicBool::new(false);
    let remote = crate::remote::open_quiet(project, &store).map_err(Error::Usage)?;
    let env = BuildEnv {
        store: &store,
        project_dir: &project.dir,
        data_dir: &project.data_dir,
        cancel: &cancel,
        threads: 1,
        remote: remote.as_ref(),
        slurm: None,
        ran_on: None,
        resolved_roots: Default::default(),
    };
    let p = plan(&env, resolved, targets)?;
    Ok((store, p))
}

/// Prints each stage's state and reasons; exit 0.
pub fn print_plan(
    project: &Project,
    resolved: &Resolved,
    targets: &[String],
    json: bool,
) -> ExitCode {
    let (_, plans) = match plans(project, resolved, targets) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    // Where each stage that will run runs: a cached one never becomes a job.
    let executor = |p: &StagePlan| {
        resolved
            .stage(&p.name)
            .map_or(Executor::Local, |s| s.executor)
    };
    if json {
        for p in &plans {
            let mut line = serde_json::to_value(p).unwrap();
            line["executor"] = executor(p).name().into();
            line["submits"] =
                (p.state == PlanState::WillRun && executor(p) == Executor::Slurm).into();
            println!("{line}");
        }
        return ExitCode::SUCCESS;
    }
    println!("variant {}", resolved.variant);
    for p in &plans {
        let short = p.key.as_deref().map(|k| &k[..12]).unwrap_or("?");
        let submits = p.state == PlanState::WillRun && executor(p) == Executor::Slurm;
        let place = if submits { "  (a Slurm job)" } else { "" };
        println!("{:<9} {:<12} key {short}{place}", p.state.word(), p.name);
        for r in &p.reasons {
            println!("            {r}");
        }
    }
    ExitCode::SUCCESS
}

pub fn status(host: &'static crate::Host, common: &Common, targets: &[String]) -> ExitCode {
    match Project::load(host, common) {
        Ok(project) => print_plan(&project, &project.resolved, targets, common.json),
        Err(e) => usage_error(e),
    }
}

pub fn why(host: &'static crate::Host, common: &Common, stage: &str) -> ExitCode {
    let project = match Project::load(host, common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let (store, plans) = match plans(&project, &project.resolved, &[stage.to_string()]) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let plan = plans
        .iter()
        .find(|p| p.name == stage)
        .expect("the target is in its own plan");
    if plan.state == PlanState::Remote {
        println!("{stage} is not in the local cache but is available remotely: a build fetches it");
        for r in &plan.reasons {
            println!("  {r}");
        }
        return ExitCode::SUCCESS;
    }
    if plan.state == PlanState::WillRun {
        println!("{stage} will run:");
        for r in &plan.reasons {
            println!("  {r}");
        }
        return ExitCode::SUCCESS;
    }
    let key = plan.key.as_deref().unwrap();
    let record = store.record(key);
    // Was it cut off in the last build of this variant that built it?
    // (A build may cover several variants: `--all-variants`, a sweep.)
    let variant = project.resolved.variant.as_str();
    let last = store
        .history()
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find_map(|h| h.stage(variant, stage).cloned());
    if last.is_some_and(|s| s.status == Status::Cutoff) {
        println!(
            "{stage} is up to date: upstream output unchanged: cut off (an upstream stage reran and produced the same bytes)"
        );
    } else {
        println!("{stage} is up to date: nothing it depends on changed since it was built");
    }
    if let Some(r) = record {
        println!("  key    {key}");
        println!("  output {}", r.output);
        println!(
            "  built  in {} ({})",
            crate::report::format_seconds(r.seconds),
            crate::commands::show::ago(r.finished)
        );
    }
    ExitCode::SUCCESS
}
