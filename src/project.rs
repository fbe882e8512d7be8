//! A project as one command sees it: the pipeline file, the resolved
//! variant, the cache and the bundled data.

use std::path::{Path, PathBuf};

use crate::cli::Common;
use crate::pipeline::{Pipeline, Resolved, parse_set};

pub struct Project {
    pub pipeline: Pipeline,
    pub resolved: Resolved,
    /// The folder holding pipeline.toml (absolute).
    pub dir: PathBuf,
    pub cache_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Project {
    /// Loads and validates everything the common flags name. Errors are
    /// ready to print.
    pub fn load(common: &Common) -> Result<Project, String> {
        let pipeline = Pipeline::load(&common.pipeline).map_err(|d| d.to_string())?;
        let mut sets = Vec::new();
        for arg in &common.sets {
            sets.push(parse_set(arg).map_err(|d| d.to_string())?);
        }
        let resolved = pipeline
            .resolve(common.variant.as_deref(), &sets)
            .map_err(|d| d.to_string())?;
        let dir = pipeline
            .dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", pipeline.dir.display()))?;
        let cache_dir = dir.join("cache");
        let data_dir = data_dir(&dir);
        Ok(Project {
            pipeline,
            resolved,
            dir,
            cache_dir,
            data_dir,
        })
    }
}

/// `$VGMAKE_DATA`, else the project's own `data/` when it holds the demo
/// corpus, else the `data/` of the source tree vgmake was built from.
fn data_dir(project_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("VGMAKE_DATA") {
        return PathBuf::from(dir);
    }
    let local = project_dir.join("data");
    if local.join("demo").is_dir() {
        return local;
    }
    vgmake_stages::memo::default_data_dir()
}
