//! A project as one command sees it: the pipeline file, the resolved
//! variants, the cache and the bundled data.

use std::path::{Path, PathBuf};

use crate::Host;
use crate::cli::Common;
use crate::error::{Context, Error};
use crate::pipeline::{BuildVariants, Executor, Pipeline, Resolved};

pub struct Project {
    pub pipeline: Pipeline,
    /// The variant the command is about (`--variant`, or `default`).
    pub resolved: Resolved,
    /// Every variant a build covers: `resolved` alone, each point of a
    /// `--set a=x,y` sweep, or all variants under `--all-variants`.
    pub variants: Vec<Resolved>,
    /// Variants `--all-variants` left out: they reach the network.
    pub left_out: Vec<String>,
    /// The folder holding pipeline.toml (absolute).
    pub dir: PathBuf,
    pub cache_dir: PathBuf,
    pub data_dir: PathBuf,
    /// `--remote URL` and `--no-remote` (see crate::remote).
    pub remote_flag: Option<String>,
    pub no_remote: bool,
}

impl Project {
    /// Loads and validates everything the common flags name.
    pub fn load(host: &'static Host, common: &Common) -> Result<Project, Error> {
        Self::load_for_build(host, common, false)
    }

    pub fn load_for_build(
        host: &'static Host,
        common: &Common,
        all_variants: bool,
    ) -> Result<Project, Error> {
        let path = pipeline_path(common.pipeline.as_deref())?;
        let pipeline = Pipeline::load(&path, &host.kinds)?;
        let variants = BuildVariants::new(
            &pipeline,
            common.variant.as_deref(),
            &common.sets,
            all_variants,
        )?;
        let mut variants = variants;
        for arg in &common.executors {
            let (stage, executor) = parse_executor_flag(arg, &pipeline)?;
            for resolved in std::iter::once(&mut variants.main).chain(variants.all.iter_mut()) {
                for s in &mut resolved.stages {
                    if stage.as_deref().is_none_or(|name| name == s.name) {
                        s.executor = executor;
                    }
                }
            }
        }
        let dir = pipeline
            .dir
            .canonicalize()
            .context(|| pipeline.dir.display().to_string())?;
        let cache_dir = dir.join("cache");
        let data_dir = (host.data_dir)(&dir);
        Ok(Project {
            pipeline,
            resolved: variants.main,
            variants: variants.all,
            left_out: variants.left_out,
            dir,
            cache_dir,
            data_dir,
            remote_flag: common.remote.clone(),
            no_remote: common.no_remote,
        })
    }
}

/// `--executor slurm` (every stage) or `--executor train=slurm`.
fn parse_executor_flag(
    arg: &str,
    pipeline: &Pipeline,
) -> Result<(Option<String>, Executor), Error> {
    let (stage, name) = match arg.split_once('=') {
        Some((stage, name)) => (Some(stage.trim()), name.trim()),
        None => (None, arg.trim()),
    };
    let executor = Executor::parse(name).ok_or_else(|| {
        Error::Usage(format!(
            "--executor {arg}: unknown executor `{name}` (executors: {})",
            Executor::NAMES.join(", ")
        ))
    })?;
    if let Some(stage) = stage
        && pipeline.stage(stage).is_none()
    {
        return Err(Error::Usage(format!(
            "--executor {arg}: no stage is named `{stage}`"
        )));
    }
    Ok((stage.map(str::to_string), executor))
}

const PIPELINE_FILE: &str = "pipeline.toml";

/// The pipeline file: the one named by `-f`, else `pipeline.toml` in the
/// current folder or the nearest folder above it (as cargo finds
/// Cargo.toml).
fn pipeline_path(named: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = named {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().context(|| "reading the current folder")?;
    for dir in cwd.ancestors() {
        let candidate = dir.join(PIPELINE_FILE);
        if candidate.is_file() {
            // Relative when it is here, so messages stay short.
            return Ok(if dir == cwd {
                PathBuf::from(PIPELINE_FILE)
            } else {
                candidate
            });
        }
    }
    Err(Error::Usage(format!(
        "no {PIPELINE_FILE} in {} or any folder above it (name one with -f FILE)",
        cwd.display()
    )))
}
