//! `pipeline.toml` as the engine sees it: the declared stages and variants
//! ([`parse`]), the effective parameters of one build ([`resolve`]), and
//! the command line's `--set`, sweeps and variant choice ([`overrides`]).

mod overrides;
mod parse;
mod resolve;
pub(crate) mod spans;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use vgmake_api::{Params, Setting, StageKind};

use crate::diagnostic::Origin;

pub use overrides::BuildVariants;

/// A parsed, validated pipeline file.
pub struct Pipeline {
    pub path: PathBuf,
    /// The folder holding the file: relative paths in parameters start here.
    pub dir: PathBuf,
    pub stages: Vec<StageDecl>,
    pub variants: BTreeMap<String, Vec<Override>>,
    /// The `[cache]` table (the remote cache; never part of a key).
    pub cache: crate::remote::CacheConfig,
    /// The `[executors.slurm]` table (never part of a key).
    pub slurm: crate::slurm::SlurmOptions,
    /// Stage name -> position in `stages`.
    index: HashMap<String, usize>,
}

/// One `[stages.NAME]` table.
pub struct StageDecl {
    pub name: String,
    pub kind: &'static dyn StageKind,
    pub deps: Vec<String>,
    /// The slot of the kind's declared inputs each dependency fills.
    pub slots: Vec<Option<&'static str>>,
    /// Parameters set in the file, in file order (defaults are filled in by
    /// `resolve`).
    pub settings: Vec<Override>,
    pub origin: Origin,
    /// Where it runs (`executor = "..."`; not part of its key).
    pub executor: Executor,
    /// Its own `slurm = { ... }` settings, over `[executors.slurm]`.
    pub slurm: crate::slurm::SlurmOptions,
}

/// Where a stage runs. The result is the same either way, so it never
/// enters a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Executor {
    #[default]
    Local,
    Slurm,
}

impl Executor {
    pub const NAMES: &[&str] = &["local", "slurm"];
    pub fn parse(name: &str) -> Option<Executor> {
        match name {
            "local" => Some(Executor::Local),
            "slurm" => Some(Executor::Slurm),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Executor::Local => "local",
            Executor::Slurm => "slurm",
        }
    }
}

/// A parameter setting of one stage: from its table in the file, a
/// variant, or `--set`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub stage: String,
    pub setting: Setting,
    pub origin: Origin,
    /// The dotted key as the user wrote it, for messages:
    /// `stages.limit.max_events`, `variants.short.limit.max_events`,
    /// `limit.max_events`.
    pub path: String,
}

/// A stage with its effective parameters, for one variant and set of overrides.
#[derive(Clone)]
pub struct ResolvedStage {
    pub name: String,
    pub kind: &'static dyn StageKind,
    pub deps: Vec<String>,
    pub slots: Vec<Option<&'static str>>,
    pub params: Params,
    pub executor: Executor,
    /// Its job settings (`[executors.slurm]` with its own over them).
    pub slurm: crate::slurm::SlurmOptions,
}

/// The pipeline as one build sees it.
pub struct Resolved {
    /// `default` when no variant is applied.
    pub variant: String,
    pub stages: Vec<ResolvedStage>,
    index: HashMap<String, usize>,
}

impl Resolved {
    pub fn new(variant: String, stages: Vec<ResolvedStage>) -> Self {
        let index = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Resolved {
            variant,
            stages,
            index,
        }
    }
    pub fn stage(&self, name: &str) -> Option<&ResolvedStage> {
        self.index.get(name).map(|&i| &self.stages[i])
    }
}

impl Pipeline {
    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.index.get(name).map(|&i| &self.stages[i])
    }
}

pub const DEFAULT_VARIANT: &str = "default";

/// Longest stage or variant name: it becomes a file name (`out/<variant>/<stage>`).
pub const MAX_NAME_LEN: usize = 100;

/// Whether `name` may name a stage or variant: it reaches the file system.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
