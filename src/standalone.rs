//! Running one stage kind outside a pipeline (a stage kind's tests,
//! benchmarks, examples), through the same code as a build's run: the
//! engine's memo and state folders under a work folder of the caller's.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use vgmake_api::{Input, Params, Progress, StageError, StageKind, Value};

use crate::error::StageFailure;
use crate::run::{StageRun, run_stage};

/// One run of a stage kind outside a pipeline. [`run`] fills in the usual
/// choices; build one by hand to cancel it or to refresh a source stage.
pub struct Standalone<'a> {
    pub kind: &'a dyn StageKind,
    /// Parameters over the kind's defaults.
    pub overrides: &'a [(&'a str, Value)],
    /// Dependency outputs; their slots are filled in from the kind's
    /// declared inputs.
    pub inputs: &'a [Input],
    /// Where the output goes (created).
    pub out_dir: &'a Path,
    /// Memo, state and temp folders live here, kept across runs.
    pub work_dir: &'a Path,
    pub data_dir: &'a Path,
    pub progress: &'a dyn Progress,
    pub cancel: &'a AtomicBool,
    pub refresh: bool,
    pub threads: usize,
}

/// Runs `kind` with its defaults and `overrides` on `inputs`, writing its
/// output into `out_dir`, with all cores. Returns what the stage measured.
pub fn run(
    kind: &dyn StageKind,
    overrides: &[(&str, Value)],
    inputs: &[Input],
    out_dir: &Path,
    work_dir: &Path,
    data_dir: &Path,
    progress: &dyn Progress,
) -> Result<BTreeMap<String, f64>, StageError> {
    Standalone {
        kind,
        overrides,
        inputs,
        out_dir,
        work_dir,
        data_dir,
        progress,
        cancel: &AtomicBool::new(false),
        refresh: false,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
    .run()
}

impl Standalone<'_> {
    pub fn run(&self) -> Result<BTreeMap<String, f64>, StageError> {
        let kind = self.kind;
        let params = Params::with(kind, self.overrides).map_err(StageError::Config)?;
        let dep_kinds: Vec<&str> = self.inputs.iter().map(|i| i.kind.as_str()).collect();
        let slots = kind.inputs().assign(&dep_kinds).map_err(|e| {
            StageError::Config(format!(
                "the inputs do not fit stage kind `{}`: {e:?}",
                kind.name()
            ))
        })?;
        let inputs: Vec<Input> = self
            .inputs
            .iter()
            .zip(slots)
            .map(|(input, slot)| Input {
                slot,
                ..input.clone()
            })
            .collect();
        let io = |what: &str, e| StageError::io(what, e);
        fs::create_dir_all(self.out_dir).map_err(|e| io("creating the output folder", e))?;
        let temp_dir = self.work_dir.join("tmp");
        fs::create_dir_all(&temp_dir).map_err(|e| io("creating the temp folder", e))?;
        let run = StageRun {
            name: kind.name(),
            kind,
            params: &params,
            inputs: &inputs,
            out_dir: self.out_dir,
            temp_dir: &temp_dir,
            project_dir: self.work_dir,
            data_dir: self.data_dir,
            memo_dir: &self.work_dir.join("memo").join(kind.name()),
            state_dir: &self.work_dir.join("state").join(kind.name()),
            progress: self.progress,
            cancel: self.cancel,
            refresh: self.refresh,
            threads: self.threads,
            remote: None,
        };
        match run_stage(&run) {
            Ok(outcome) => Ok(outcome.measurements),
            Err(StageFailure::Stage(e)) => Err(e),
            Err(StageFailure::Cancelled) => Err(StageError::Cancelled),
            Err(StageFailure::Io { context, source }) => Err(StageError::Io { context, source }),
            Err(other) => Err(StageError::Other(other.to_string())),
        }
    }
}
