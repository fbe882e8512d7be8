//! Running a stage kind's code once, in a staging folder: the context it
//! gets, its memo and state folder, panics caught. The executor and
//! [`crate::standalone`] both run stages through here.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use vgmake_api::{Input, Measurements, Params, Progress, StageContext, StageError, StageKind};

use crate::error::StageFailure;
use crate::memo::DirMemo;

/// Everything one run needs.
pub struct StageRun<'a> {
    pub name: &'a str,
    pub kind: &'a dyn StageKind,
    pub params: &'a Params,
    pub inputs: &'a [Input],
    /// The empty folder that becomes the output.
    pub out_dir: &'a Path,
    pub temp_dir: &'a Path,
    pub project_dir: &'a Path,
    pub data_dir: &'a Path,
    /// This kind's memo folder.
    pub memo_dir: &'a Path,
    /// This run's state folder (created by the stage when it uses it).
    pub state_dir: &'a Path,
    pub progress: &'a dyn Progress,
    pub cancel: &'a AtomicBool,
    pub refresh: bool,
    pub threads: usize,
    /// Memo misses are looked up here (verified) before the stage computes them.
    pub remote: Option<&'a crate::remote::Remote>,
}

/// What a finished run leaves besides its output folder.
pub struct RunOutcome {
    /// Memo entries it read or wrote (kept by `gc` with its record).
    pub memo_keys: Vec<String>,
    pub measurements: BTreeMap<String, f64>,
}

/// Runs the stage's code.
pub fn run_stage(run: &StageRun) -> Result<RunOutcome, StageFailure> {
    let memo = DirMemo::new(run.memo_dir)
        .map_err(|e| StageFailure::io(format!("opening the memo {}", run.memo_dir.display()), e))?;
    let shared = run.remote.map(|r| r.memo(&memo, run.memo_dir));
    let memo_view: &dyn vgmake_api::Memo = match &shared {
        Some(s) => s,
        None => &memo,
    };
    let measurements = Measurements::default();
    let ctx = StageContext {
        stage: run.name,
        params: run.params,
        inputs: run.inputs,
        out_dir: run.out_dir,
        temp_dir: run.temp_dir,
        project_dir: run.project_dir,
        data_dir: run.data_dir,
        memo: memo_view,
        progress: run.progress,
        measurements: &measurements,
        cancel: run.cancel,
        refresh: run.refresh,
        threads: run.threads,
        state_dir: run.state_dir,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| run.kind.run(&ctx)));
    if let Some(shared) = &shared {
        shared.report(run.progress);
    }
    // The run's pack and its index, before the result is recorded (and its
    // memo entries pushed to a remote cache).
    if let Err(e) = memo.finish() {
        run.progress
            .log(&format!("could not write the memo's pack index: {e}"));
    }
    if memo.corrupt_entries() > 0 {
        run.progress.log(&format!(
            "dropped {} corrupt memo entries (recomputed)",
            memo.corrupt_entries()
        ));
    }
    match outcome {
        Ok(Ok(())) => Ok(RunOutcome {
            memo_keys: memo.used_keys(),
            measurements: measurements.take(),
        }),
        Ok(Err(StageError::Cancelled)) => Err(StageFailure::Cancelled),
        Ok(Err(e)) => Err(StageFailure::Stage(e)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(StageFailure::Panic {
                kind: run.kind.name().to_string(),
                message,
            })
        }
    }
}
