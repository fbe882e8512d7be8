//! A stage kind: what it declares (parameters, inputs, state, metrics) and
//! the work it does. The engine decides everything else.

use crate::{
    ExternalInputs, Inputs, MetricSpec, ParamSpec, Params, ProjectFiles, ReportSpec, StageContext,
    StageError,
};

/// A stage kind: scrape, encode, limit, vocab, train, sample, command.
pub trait StageKind: Send + Sync {
    /// The name used in `kind = "..."`.
    fn name(&self) -> &'static str;
    /// Bumped whenever the output for the same inputs changes; part of the key.
    fn version(&self) -> u32;
    /// One line for `vgmake params` and the README.
    fn doc(&self) -> &'static str;
    /// The declared parameters.
    fn params(&self) -> Vec<ParamSpec>;
    /// Extra checks across parameters, after each was type-checked
    /// (`min_events <= max_events`, say). Messages name the parameter.
    fn validate(&self, _params: &Params) -> Result<(), String> {
        Ok(())
    }
    /// What it reads from its dependencies; the engine checks `deps`
    /// against it when it parses the pipeline.
    fn inputs(&self) -> Inputs {
        Inputs::Any
    }
    /// Parameters that do not change the resumable state a run builds on
    /// (`steps`, `threads`): left out of the name of its state folder.
    fn state_ignores(&self) -> &'static [&'static str] {
        &[]
    }
    /// The numbers it reports in `metrics.json` or as measurements.
    fn metrics(&self) -> Vec<MetricSpec> {
        Vec::new()
    }
    /// What `vgmake report` shows of its output beyond the metrics: curves,
    /// media per item, summaries of its JSON reports.
    fn report(&self) -> ReportSpec {
        ReportSpec::default()
    }
    /// Whether running it reaches the network (a scrape of a web site). The
    /// engine does not start such a stage unless it was asked for by name.
    fn needs_network(&self, _params: &Params) -> bool {
        false
    }
    /// Inputs from outside the cache that enter the key (source stages:
    /// the local corpus folder; `command`: allow-listed environment
    /// variables and script files). Folders are listed through
    /// `files.folders`, which the engine answers from its listing cache.
    fn external_inputs(
        &self,
        _params: &Params,
        _files: &ProjectFiles,
    ) -> Result<ExternalInputs, StageError> {
        Ok(ExternalInputs::default())
    }
    /// Does the work: reads `ctx.inputs`, fills `ctx.out_dir`. Numbers worth
    /// comparing go to `metrics.json` in the output (deterministic ones) or
    /// to `ctx.measurements` (timings, memory).
    fn run(&self, ctx: &StageContext) -> Result<(), StageError>;
}
