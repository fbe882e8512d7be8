//! `vgmake build`: bring the targets up to date.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::cli::{BuildArgs, Common};
use crate::commands::{EXIT_FAILED, EXIT_INTERRUPTED, usage_error};
use crate::executor::BuildEnv;
use crate::history::{HistoryEntry, HistoryStage};
use crate::lock::{ProjectLock, Wait, unix_now};
use crate::pipeline::Executor;
use crate::project::Project;
use crate::report::{self, Status};
use crate::scheduler::{BuildOptions, build};
use crate::slurm::{JobRemote, Slurm};
use crate::store::Store;

/// `-j` is capped at 4 x cores (at least this): each job is a thread with its
/// own stage, and thousands of them only thrash the machine.
const MIN_MAX_JOBS: usize = 16;

/// Set by Ctrl-C; stages stop at their next item boundary.
pub static CANCEL: AtomicBool = AtomicBool::new(false);

pub fn run(host: &'static crate::Host, common: &Common, args: &BuildArgs) -> ExitCode {
    let project = match Project::load_for_build(host, common, args.all_variants) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    for name in args.force.iter().chain(&args.refresh) {
        if project.resolved.stage(name).is_none() {
            return usage_error(format!("--force/--refresh: no stage is named `{name}`"));
        }
    }
    for name in &project.left_out {
        eprintln!(
            "note: --all-variants leaves out variant `{name}`: it downloads from the network; build it by name: vgmake build --variant {name}"
        );
    }
    if args.dry_run {
        let mut code = ExitCode::SUCCESS;
        for resolved in &project.variants {
            code =
                crate::commands::status::print_plan(&project, resolved, &args.targets, common.json);
        }
        return code;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max_jobs = (4 * cores).max(MIN_MAX_JOBS);
    let jobs = args.jobs.unwrap_or(cores).max(1);
    let jobs = if jobs > max_jobs {
        eprintln!("note: -j {jobs} is more than {cores} cores can use; running {max_jobs} at once");
        max_jobs
    } else {
        jobs
    };
    // Stages parallelize inside with rayon; one pool sized by -j. Rayon's
    // own pool has a thread per core and starts on first use: a no-op that
    // never needs it then never waits for its threads to start.
    if jobs != cores || std::env::var_os("RAYON_NUM_THREADS").is_some() {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .build_global();
    }

    let store = match std::fs::create_dir_all(&project.cache_dir)
        .and_then(|_| Store::open(&project.cache_dir))
    {
        Ok(s) => s,
        Err(e) => {
            return usage_error(format!(
                "cannot open the cache at {}: {e}",
                project.cache_dir.display()
            ));
        }
    };
    let wait = if args.no_wait {
        Wait::NoWait
    } else {
        Wait::Block(Box::new(|holder: &str| {
            eprintln!("waiting for another build to finish ({holder})")
        }))
    };
    let (_lock, stale) = match ProjectLock::acquire(&store.root, wait) {
        Ok(l) => l,
        Err(e) => return usage_error(e),
    };
    let display = report::display(common.json, args.verbose);
    if let Some(note) = stale {
        display.note(&format!("note: {note}"));
    }
    match store.clean_tmp() {
        Ok(0) => {}
        Ok(n) => display.note(&format!(
            "note: removed {n} unfinished staging folder(s) of an interrupted build"
        )),
        Err(e) => display.note(&format!(
            "warning: cannot clean {}: {e}",
            store.tmp_dir().display()
        )),
    }
    crate::slurm::clean_jobs(&store.root);
    install_ctrl_c(display.clone());
    let remote = match crate::remote::open_for(&project, &store, display.clone()) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };

    let uses_slurm = project
        .variants
        .iter()
        .flat_map(|v| &v.stages)
        .any(|s| s.executor == Executor::Slurm);
    let slurm = uses_slurm.then(|| {
        let remote = remote.as_ref().map(|r| JobRemote {
            url: r.url().to_string(),
            cache: project.pipeline.cache.clone(),
        });
        Slurm::new(&store.root, remote)
    });
    let env = BuildEnv {
        store: &store,
        project_dir: &project.dir,
        data_dir: &project.data_dir,
        cancel: &CANCEL,
        threads: jobs,
        remote: remote.as_ref(),
        slurm: slurm.as_ref(),
        ran_on: None,
        resolved_roots: Default::default(),
    };
    let options = BuildOptions {
        targets: args.targets.clone(),
        jobs,
        force: args.force.iter().cloned().collect::<BTreeSet<_>>(),
        refresh: args.refresh.iter().cloned().collect::<BTreeSet<_>>(),
    };
    let started = Instant::now();
    let results = match build(&env, &project.variants, &options, display.clone()) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    if let Some(note) = remote.as_ref().and_then(|r| r.finish()) {
        display.note(&note);
    }
    let seconds = started.elapsed().as_secs_f64();
    // Each on its own: one that cannot be written costs only its speed-up.
    for (file, saved) in [
        ("statcache.bin", store.stats.save()),
        ("keymemo.bin", store.keys.save()),
        ("listings.bin", store.folders.save()),
    ] {
        if let Err(e) = saved {
            let path = store.root.join(file);
            display.note(&format!("warning: cannot save {}: {e}", path.display()));
        }
    }
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let history = HistoryEntry {
        finished: unix_now(),
        variants: project.variants.iter().map(|v| v.variant.clone()).collect(),
        sets: common.sets.clone(),
        targets: args.targets.clone(),
        seconds,
        stages: results
            .iter()
            .map(|r| HistoryStage {
                name: r.name.clone(),
                variant: r.variant.clone(),
                status: r.status,
                key: r.key.clone(),
                output: r.output.clone(),
                seconds: r.seconds,
            })
            .collect(),
    };
    if let Err(e) = store.flush_refs() {
        display.note(&format!(
            "warning: cannot record what the variants built: {e}"
        ));
    }
    if let Err(e) = store.append_history(&history) {
        display.note(&format!("warning: cannot append to the build history: {e}"));
    }
    let failed = count(Status::Failed) + count(Status::Skipped);
    if !common.json {
        display.note(&format!(
            "{} ran, {} cached,{} {} cut off, {} failed, {} skipped in {} (variant{} {})",
            count(Status::Ran),
            count(Status::Cached),
            match count(Status::Fetched) {
                0 => String::new(),
                n => format!(" {n} fetched,"),
            },
            count(Status::Cutoff),
            count(Status::Failed),
            count(Status::Skipped),
            report::format_seconds(seconds),
            if project.variants.len() > 1 { "s" } else { "" },
            project
                .variants
                .iter()
                .map(|v| v.variant.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    if CANCEL.load(Ordering::Relaxed) {
        display.note(
            "interrupted: finished stages and items are kept; run the build again to continue",
        );
        ExitCode::from(EXIT_INTERRUPTED)
    } else if failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn install_ctrl_c(display: std::sync::Arc<dyn report::Display>) {
    let _ = ctrlc::set_handler(move || {
        if CANCEL.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: leave now. The cache stays valid (every write
            // is atomic); staging folders are cleaned by the next build.
            // Jobs on the cluster would outlive the build: cancel them first.
            let jobs = crate::slurm::cancel_all();
            if !jobs.is_empty() {
                eprintln!("cancelled slurm job(s) {}", jobs.join(" "));
            }
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
        display.note("interrupting: stopping running stages (Ctrl-C again to quit at once)");
    });
}
