//! Fake stage kinds and a project in a temp folder, to drive the engine in
//! process: no binary, no candle, no MIDI.
//!
//! Every kind appends its stage name to `runs.log` in the project folder
//! when it runs, so a test counts real runs.

use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use vgmake_api::*;

use crate::Host;
use crate::executor::BuildEnv;
use crate::outcome::{StageResult, Status};
use crate::pipeline::{BuildVariants, Pipeline};
use crate::report::Display;
use crate::scheduler::{BuildOptions, build};
use crate::store::Store;

fn note_run(ctx: &StageContext) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ctx.project_dir.join("runs.log"))
        .unwrap();
    writeln!(f, "{}", ctx.stage).unwrap();
}

/// A source: writes `value` to `value.txt` (and `files` more numbered files).
/// `note` changes the key but not the output.
struct Source;
impl StageKind for Source {
    fn name(&self) -> &'static str {
        "source"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "writes a value"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("value", ParamType::ANY_STR, "v", "the value"),
            ParamSpec::new(
                "note",
                ParamType::ANY_STR,
                "",
                "enters the key, not the output",
            ),
            ParamSpec::new(
                "files",
                ParamType::Int {
                    min: 0,
                    max: 10_000,
                },
                0,
                "extra files",
            ),
            ParamSpec::new(
                "reads",
                ParamType::ANY_STR,
                "",
                "a project file whose text is appended (an external input)",
            ),
            ParamSpec::new("lo", ParamType::Int { min: 0, max: 100 }, 0, ""),
            ParamSpec::new("hi", ParamType::Int { min: 0, max: 100 }, 10, ""),
        ]
    }
    fn validate(&self, p: &Params) -> Result<(), String> {
        if p.int("lo") > p.int("hi") {
            return Err("`lo` must not exceed `hi`".into());
        }
        Ok(())
    }
    fn inputs(&self) -> Inputs {
        Inputs::Slots(&[])
    }
    fn external_inputs(
        &self,
        params: &Params,
        files: &ProjectFiles,
    ) -> Result<ExternalInputs, StageError> {
        let mut ext = ExternalInputs::default();
        if !params.str("reads").is_empty() {
            ext.paths.push(files.project_dir.join(params.str("reads")));
        }
        Ok(ext)
    }
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        note_run(ctx);
        let mut value = ctx.params.str("value").to_string();
        if !ctx.params.str("reads").is_empty() {
            value += &fs::read_to_string(ctx.project_dir.join(ctx.params.str("reads")))
                .ctx(|| "reading")?;
        }
        fs::write(ctx.out_dir.join("value.txt"), value).ctx(|| "writing")?;
        for i in 0..ctx.params.usize("files") {
            fs::write(ctx.out_dir.join(format!("f{i}.txt")), format!("{i}")).ctx(|| "writing")?;
        }
        Ok(())
    }
}

/// Reads `input/value.txt`, appends `suffix`; measures something; may
/// keep state. `fail`: returns an error; `panic`: panics; `wait`: runs
/// until cancelled.
struct Transform;
impl StageKind for Transform {
    fn name(&self) -> &'static str {
        "transform"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "appends a suffix"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("suffix", ParamType::ANY_STR, "", "appended"),
            ParamSpec::new(
                "steps",
                ParamType::Int { min: 0, max: 100 },
                1,
                "ignored by the state",
            ),
            ParamSpec::new(
                "mode",
                ParamType::Str {
                    choices: &["ok", "fail", "panic", "wait"],
                },
                "ok",
                "",
            ),
        ]
    }
    fn inputs(&self) -> Inputs {
        Inputs::Slots(&[Slot {
            name: "text",
            kinds: &["source", "transform"],
            what: "a value",
            optional: false,
        }])
    }
    fn state_ignores(&self) -> &'static [&'static str] {
        &["steps"]
    }
    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::output("length", "length").decimals(0),
            MetricSpec::measured("runs_in_state", "runs in state").decimals(0),
        ]
    }
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        note_run(ctx);
        match ctx.params.str("mode") {
            "fail" => return Err(StageError::Input("bad input, as asked".into())),
            "panic" => panic!("boom"),
            "wait" => {
                while !ctx.is_cancelled() {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                return Err(StageError::Cancelled);
            }
            _ => {}
        }
        let input = ctx.input("text")?;
        let text = fs::read_to_string(input.dir.join("value.txt")).ctx(|| "reading")?;
        let out = format!("{text}{}", ctx.params.str("suffix"));
        fs::write(ctx.out_dir.join("value.txt"), &out).ctx(|| "writing")?;
        fs::write(
            ctx.out_dir.join("metrics.json"),
            format!("{{\"length\": {}}}", out.len()),
        )
        .ctx(|| "writing")?;
        // State: count the runs that shared this state folder.
        let state = ctx.state_dir()?;
        let runs = fs::read_to_string(state.join("runs")).map_or(0, |s| s.parse().unwrap_or(0)) + 1;
        fs::write(state.join("runs"), runs.to_string()).ctx(|| "writing state")?;
        ctx.measurements.record("runs_in_state", runs as f64);
        Ok(())
    }
}

/// The fake kinds, as a host.
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host {
        kinds: Registry::new(vec![Box::new(Source), Box::new(Transform)]),
        data_dir: |dir| dir.join("data"),
    })
}

/// A display that shows nothing.
pub struct Quiet;
impl Display for Quiet {
    fn started(&self, _: &str) {}
    fn set_total(&self, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn message(&self, _: &str, _: &str) {}
    fn log(&self, _: &str, _: &str) {}
    fn finished(&self, _: &StageResult) {}
    fn note(&self, _: &str) {}
}

/// A project folder with a pipeline file.
pub struct TestProject {
    pub dir: tempfile::TempDir,
    pub cancel: Arc<AtomicBool>,
}

impl TestProject {
    pub fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pipeline.toml"), pipeline).unwrap();
        TestProject {
            dir,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::load(&self.path().join("pipeline.toml"), &host().kinds).unwrap()
    }
    pub fn store(&self) -> Store {
        Store::open(&self.path().join("cache")).unwrap()
    }
    /// How many times each stage ran, in total.
    pub fn runs(&self, stage: &str) -> usize {
        fs::read_to_string(self.path().join("runs.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == stage)
            .count()
    }

    /// Builds everything of the variants `--set sets` gives (one, or a sweep).
    pub fn build_with(&self, sets: &[&str], force: &[&str], jobs: usize) -> Vec<StageResult> {
        self.build_full(sets, force, jobs, &[])
    }

    /// Builds only `targets` (and what they need).
    pub fn build_targets(&self, targets: &[&str]) -> Vec<StageResult> {
        self.build_full(&[], &[], 4, targets)
    }

    fn build_full(
        &self,
        sets: &[&str],
        force: &[&str],
        jobs: usize,
        targets: &[&str],
    ) -> Vec<StageResult> {
        let pipeline = self.pipeline();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let variants = BuildVariants::new(&pipeline, None, &sets, false).unwrap();
        let store = self.store();
        let data = self.path().join("data");
        let env = BuildEnv {
            store: &store,
            project_dir: self.path(),
            data_dir: &data,
            cancel: &self.cancel,
            threads: 2,
            remote: None,
            slurm: None,
            ran_on: None,
            resolved_roots: Default::default(),
        };
        let options = BuildOptions {
            targets: targets.iter().map(|s| s.to_string()).collect(),
            jobs,
            force: force.iter().map(|s| s.to_string()).collect(),
            refresh: Default::default(),
        };
        let results = build(&env, &variants.all, &options, Arc::new(Quiet)).unwrap();
        store.stats.save().unwrap();
        store.keys.save().unwrap();
        store.folders.save().unwrap();
        results
    }

    pub fn build(&self) -> Vec<StageResult> {
        self.build_with(&[], &[], 4)
    }
}

/// The status of `stage` (of the only variant built) in `results`.
pub fn status(results: &[StageResult], stage: &str) -> Status {
    results
        .iter()
        .find(|r| r.name == stage)
        .unwrap_or_else(|| panic!("{stage} not in the results"))
        .status
}
