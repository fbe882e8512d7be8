//! `vgmake push [STAGE...]`: push what the variant last built to the remote
//! cache (results built before a remote was configured, or with
//! `push = false` / `--no-remote`). A build pushes by itself otherwise.

use std::process::ExitCode;

use crate::cli::Common;
use crate::commands::{EXIT_FAILED, usage_error};
use crate::lock::{ProjectLock, Wait};
use crate::project::Project;
use crate::scheduler::selection;
use crate::store::Store;

pub fn run(host: &'static crate::Host, common: &Common, targets: &[String]) -> ExitCode {
    let project = match Project::load(host, common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let Some(store) = Store::open_existing(&project.cache_dir) else {
        println!(
            "nothing to push: no cache yet at {}",
            project.cache_dir.display()
        );
        return ExitCode::SUCCESS;
    };
    // gc must not remove what is being read.
    let wait = Wait::Block(Box::new(|holder: &str| {
        eprintln!("waiting for another build to finish ({holder})")
    }));
    let _lock = match ProjectLock::acquire(&store.root, wait) {
        Ok(l) => l,
        Err(e) => return usage_error(e),
    };
    let remote = match crate::remote::open_for_push(&project, &store) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return usage_error(
                "no remote cache: set `[cache] remote` in pipeline.toml, --remote URL or VGMAKE_REMOTE",
            );
        }
        Err(e) => return usage_error(e),
    };
    let mut missing = 0;
    let mut queued = 0;
    for resolved in &project.variants {
        let refs = store.refs(&resolved.variant);
        let stages = match selection(resolved, targets) {
            Ok(s) => s,
            Err(e) => return usage_error(e),
        };
        for stage in stages {
            let record = refs
                .get(&stage.name)
                .and_then(|r| store.record(&r.key))
                .filter(|r| store.verify_output(&r.output).is_ok());
            match record {
                Some(r) => {
                    remote.push_stage(
                        &store,
                        &r,
                        &store.memo_dir(stage.kind.name(), stage.kind.version()),
                    );
                    queued += 1;
                }
                None => {
                    eprintln!(
                        "not built (or no longer cached): `{}` of variant `{}`",
                        stage.name, resolved.variant
                    );
                    missing += 1;
                }
            }
        }
    }
    let note = remote.finish();
    println!(
        "{}",
        note.unwrap_or_else(|| format!("nothing pushed ({queued} result(s) found)"))
    );
    if remote.left_unpushed() > 0 || missing > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
