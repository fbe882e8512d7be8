//! A project as one command sees it: the pipeline file, the resolved
//! variants, the cache and the bundled data.

use std::path::{Path, PathBuf};

use crate::cli::Common;
use crate::pipeline::{DEFAULT_VARIANT, Override, Pipeline, Resolved, parse_set, sweep_values};

pub struct Project {
    pub pipeline: Pipeline,
    /// The variant the command is about (`--variant`, or `default`).
    pub resolved: Resolved,
    /// Every variant a build covers: `resolved` alone, each point of a
    /// `--set a=x,y` sweep, or all variants under `--all-variants`.
    pub variants: Vec<Resolved>,
    /// The folder holding pipeline.toml (absolute).
    pub dir: PathBuf,
    pub cache_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Project {
    /// Loads and validates everything the common flags name. Errors are
    /// ready to print.
    pub fn load(common: &Common) -> Result<Project, String> {
        Self::load_for_build(common, false)
    }

    pub fn load_for_build(common: &Common, all_variants: bool) -> Result<Project, String> {
        let pipeline = Pipeline::load(&common.pipeline).map_err(|d| d.to_string())?;
        // Each --set is one value or a sweep over several.
        let mut fixed = Vec::new();
        let mut sweeps: Vec<(Override, Vec<(String, toml::Value)>)> = Vec::new();
        for arg in &common.sets {
            let o = parse_set(arg).map_err(|d| d.to_string())?;
            let raw = arg.split_once('=').map(|(_, v)| v).unwrap_or("");
            let values = sweep_values(raw);
            if values.len() > 1 {
                sweeps.push((o, values));
            } else {
                fixed.push(o);
            }
        }
        let base = common.variant.as_deref();
        let resolved = pipeline.resolve(base, &fixed).map_err(|d| d.to_string())?;
        let mut variants = Vec::new();
        if all_variants {
            variants.push(pipeline.resolve(None, &fixed).map_err(|d| d.to_string())?);
            for name in pipeline.variants.keys() {
                variants.push(
                    pipeline
                        .resolve(Some(name), &fixed)
                        .map_err(|d| d.to_string())?,
                );
            }
        } else if sweeps.is_empty() {
            variants.push(pipeline.resolve(base, &fixed).map_err(|d| d.to_string())?);
        } else {
            for point in cartesian(&sweeps) {
                let mut sets = fixed.clone();
                let mut name_parts = Vec::new();
                for (o, (text, value)) in sweeps.iter().map(|(o, _)| o).zip(point) {
                    // Named by the parameter (or table entry) alone unless two sweeps share it.
                    let short = |x: &Override| x.subkey.clone().unwrap_or_else(|| x.key.clone());
                    let ambiguous = sweeps
                        .iter()
                        .filter(|(other, _)| short(other) == short(o))
                        .count()
                        > 1;
                    let key = if ambiguous {
                        format!("{}.{}", o.stage, short(o))
                    } else {
                        short(o)
                    };
                    name_parts.push(format!("{key}={}", text.replace('/', "_")));
                    sets.push(Override { value, ..o.clone() });
                }
                let mut r = pipeline.resolve(base, &sets).map_err(|d| d.to_string())?;
                let prefix = base
                    .filter(|b| *b != DEFAULT_VARIANT)
                    .map(|b| format!("{b}+"))
                    .unwrap_or_default();
                r.variant = format!("{prefix}{}", name_parts.join(","));
                variants.push(r);
            }
        }
        let dir = pipeline
            .dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", pipeline.dir.display()))?;
        let cache_dir = dir.join("cache");
        let data_dir = data_dir(&dir);
        Ok(Project {
            pipeline,
            resolved,
            variants,
            dir,
            cache_dir,
            data_dir,
        })
    }
}

/// Every combination of one value per sweep, the first sweep varying slowest.
fn cartesian(sweeps: &[(Override, Vec<(String, toml::Value)>)]) -> Vec<Vec<(String, toml::Value)>> {
    let mut points: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (_, values) in sweeps {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push(v.clone());
                    q
                })
            })
            .collect();
    }
    points
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
