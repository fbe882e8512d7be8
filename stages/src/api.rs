//! The stage API: the only thing the engine knows about a stage, and the only
//! thing a stage knows about the engine.
//!
//! A stage kind declares its parameters (type, default, doc) and a `run`
//! function. `run` gets the effective parameter values, the output folders of
//! its dependencies (read-only) and an empty output folder to fill. It never
//! touches the cache, the graph or the CLI, except through the per-item
//! [`Memo`] and the persistent [`StageContext::state_dir`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// A parameter value. TOML's own value type: parsing `pipeline.toml` and
/// `--set` overrides yields it directly.
pub type Value = toml::Value;

/// The type a declared parameter accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    Bool,
    /// A 64-bit integer within `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A float; an integer literal is accepted and widened (`lr = 1` is `1.0`).
    Float {
        min: f64,
        max: f64,
    },
    /// A string; when `choices` is not empty it must be one of them.
    Str {
        choices: &'static [&'static str],
    },
    /// A list of strings; when `choices` is not empty each must be one of them.
    StrList {
        choices: &'static [&'static str],
    },
    /// A table of scalar values (the `command` kind's `params`).
    Table,
}

impl ParamType {
    pub const ANY_INT: ParamType = ParamType::Int {
        min: i64::MIN,
        max: i64::MAX,
    };
    pub const ANY_STR: ParamType = ParamType::Str { choices: &[] };

    /// A short human name for error messages: "an integer in 1..=64".
    pub fn describe(&self) -> String {
        match self {
            ParamType::Bool => "a boolean (true or false)".into(),
            ParamType::Int { min, max } if *min == i64::MIN && *max == i64::MAX => {
                "an integer".into()
            }
            ParamType::Int { min, max } if *max == i64::MAX => format!("an integer >= {min}"),
            ParamType::Int { min, max } => format!("an integer in {min}..={max}"),
            ParamType::Float { min, max } if min.is_infinite() && max.is_infinite() => {
                "a number".into()
            }
            ParamType::Float { min, max } => format!("a number in {min}..={max}"),
            ParamType::Str { choices } if choices.is_empty() => "a string".into(),
            ParamType::Str { choices } => format!("one of {}", quoted(choices)),
            ParamType::StrList { choices } if choices.is_empty() => "a list of strings".into(),
            ParamType::StrList { choices } => format!("a list of {}", quoted(choices)),
            ParamType::Table => "a table of values".into(),
        }
    }

    /// Checks `value` against the type and returns its canonical form
    /// (integers widened to floats where a float is declared), or a message
    /// saying what is wrong.
    pub fn check(&self, value: &Value) -> Result<Value, String> {
        let wrong = || {
            Err(format!(
                "expected {}, found {} `{}`",
                self.describe(),
                value.type_str(),
                value
            ))
        };
        match (self, value) {
            (ParamType::Bool, Value::Boolean(_)) => Ok(value.clone()),
            (ParamType::Int { min, max }, Value::Integer(i)) => {
                if i < min || i > max {
                    wrong()
                } else {
                    Ok(value.clone())
                }
            }
            (ParamType::Float { min, max }, Value::Integer(i)) => ParamType::Float {
                min: *min,
                max: *max,
            }
            .check(&Value::Float(*i as f64)),
            (ParamType::Float { min, max }, Value::Float(f)) => {
                if f.is_nan() || f < min || f > max {
                    wrong()
                } else {
                    Ok(value.clone())
                }
            }
            (ParamType::Str { choices }, Value::String(s)) => {
                if choices.is_empty() || choices.contains(&s.as_str()) {
                    Ok(value.clone())
                } else {
                    wrong()
                }
            }
            (ParamType::StrList { choices }, Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(s) if choices.is_empty() || choices.contains(&s.as_str()) => {
                        }
                        _ => return wrong(),
                    }
                }
                Ok(value.clone())
            }
            (ParamType::Table, Value::Table(t)) => {
                if t.values()
                    .all(|v| !matches!(v, Value::Table(_) | Value::Array(_)))
                {
                    Ok(value.clone())
                } else {
                    Err("expected a table of scalar values (strings, numbers, booleans)".into())
                }
            }
            _ => wrong(),
        }
    }
}

fn quoted(choices: &[&str]) -> String {
    choices
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One declared parameter of a stage kind.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: Value,
    pub doc: &'static str,
}

impl ParamSpec {
    pub fn new(
        name: &'static str,
        ty: ParamType,
        default: impl Into<Value>,
        doc: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            ty,
            default: default.into(),
            doc,
        }
    }
}

/// The effective parameter values of one stage: every declared parameter,
/// defaults filled in, types checked. Getters panic only on a programming
/// error (asking for an undeclared name or the wrong type).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: BTreeMap<String, Value>,
}

impl Params {
    pub fn new(values: BTreeMap<String, Value>) -> Self {
        Params { values }
    }
    pub fn values(&self) -> &BTreeMap<String, Value> {
        &self.values
    }
    pub fn get(&self, name: &str) -> &Value {
        self.values
            .get(name)
            .unwrap_or_else(|| panic!("parameter `{name}` is not declared by this stage kind"))
    }
    pub fn bool(&self, name: &str) -> bool {
        self.get(name)
            .as_bool()
            .unwrap_or_else(|| panic!("parameter `{name}` is not a bool"))
    }
    pub fn int(&self, name: &str) -> i64 {
        self.get(name)
            .as_integer()
            .unwrap_or_else(|| panic!("parameter `{name}` is not an integer"))
    }
    pub fn usize(&self, name: &str) -> usize {
        usize::try_from(self.int(name)).unwrap_or_else(|_| panic!("parameter `{name}` is negative"))
    }
    pub fn float(&self, name: &str) -> f64 {
        match self.get(name) {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            _ => panic!("parameter `{name}` is not a number"),
        }
    }
    pub fn str(&self, name: &str) -> &str {
        self.get(name)
            .as_str()
            .unwrap_or_else(|| panic!("parameter `{name}` is not a string"))
    }
    pub fn str_list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => panic!("parameter `{name}` is not a list"),
        }
    }
    pub fn table(&self, name: &str) -> &toml::Table {
        self.get(name)
            .as_table()
            .unwrap_or_else(|| panic!("parameter `{name}` is not a table"))
    }
}

/// Inputs from outside the cache that enter a stage's key: files and
/// folders (hashed by content, with a stat cache), and named strings such as
/// allow-listed environment variables.
#[derive(Debug, Clone, Default)]
pub struct ExternalInputs {
    pub paths: Vec<PathBuf>,
    pub values: BTreeMap<String, String>,
}

/// The output folder of one dependency.
#[derive(Debug, Clone)]
pub struct Input {
    /// The dependency's stage name in pipeline.toml.
    pub stage: String,
    /// Its stage kind.
    pub kind: String,
    /// Its output folder (read-only).
    pub dir: PathBuf,
}

/// A per-item cache for stages that map over items (one downloaded file, one
/// encoded song). Keys are chosen by the stage (a hash of the item's content
/// and the parameters that shape its result); the engine namespaces them by
/// stage kind and version. Values are written atomically and verified on read.
pub trait Memo: Send + Sync {
    /// The stored bytes for `key`, or `None` when absent (or found corrupt,
    /// which the engine reports and drops).
    fn get(&self, key: &blake3::Hash) -> Option<Vec<u8>>;
    /// Stores `value` under `key`.
    fn put(&self, key: &blake3::Hash, value: &[u8]) -> std::io::Result<()>;
    /// Stores the file at `path` under `key` by moving it (for large items
    /// streamed to disk). The file must be on the same file system as the
    /// staging folder (any path under the stage's output or temp folder is).
    fn put_file(&self, key: &blake3::Hash, path: &Path) -> std::io::Result<()>;
    /// The path of the stored file for `key` (read-only, do not modify), to
    /// copy or hard-link from; `None` when absent or corrupt.
    fn path(&self, key: &blake3::Hash) -> Option<PathBuf>;
}

/// Progress reporting. The engine draws a bar on a terminal and plain lines
/// otherwise; stages only say how far they are.
pub trait Progress: Send + Sync {
    /// Sets the number of items to do (0 = unknown).
    fn set_total(&self, total: u64);
    /// Adds `n` finished items.
    fn advance(&self, n: u64);
    /// A short status such as "nes 120/4195, 2.1 MB".
    fn message(&self, msg: &str);
    /// A line for the stage's log (kept in the cache beside the result and
    /// shown by `vgmake show`); also printed under `--verbose`.
    fn log(&self, line: &str);
}

/// A progress sink that discards everything (for tests and CLI tools).
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn message(&self, _: &str) {}
    fn log(&self, _: &str) {}
}

/// Everything a running stage gets.
pub struct StageContext<'a> {
    /// This stage's name in pipeline.toml.
    pub stage: &'a str,
    /// Effective parameter values.
    pub params: &'a Params,
    /// Dependency outputs, in the order of `deps`.
    pub inputs: &'a [Input],
    /// The empty folder to write outputs into. Everything in it becomes the
    /// stage's output; write nothing elsewhere (except `temp_dir`).
    pub out_dir: &'a Path,
    /// Scratch space on the cache's file system, deleted after the run.
    pub temp_dir: &'a Path,
    /// The folder holding pipeline.toml (relative paths in parameters are
    /// resolved against it).
    pub project_dir: &'a Path,
    /// The folder of bundled data (`data/` beside the binary's sources, or
    /// `$VGMAKE_DATA`).
    pub data_dir: &'a Path,
    pub memo: &'a dyn Memo,
    pub progress: &'a dyn Progress,
    /// Set when the user pressed Ctrl-C: stop at the next item boundary and
    /// return [`StageError::Cancelled`]; finished items stay in the memo.
    pub cancel: &'a AtomicBool,
    /// True under `vgmake build --refresh STAGE`: source stages revalidate
    /// what they fetched instead of trusting their memo.
    pub refresh: bool,
    /// Worker threads the stage may use (`-j`).
    pub threads: usize,
    /// Root of persistent, resumable per-stage state (checkpoints): see
    /// [`StageContext::state_dir`].
    pub state_root: &'a Path,
}

impl StageContext<'_> {
    /// The input of the given stage kind (the first one when several).
    pub fn input_of_kind(&self, kind: &str) -> Result<&Input, StageError> {
        self.inputs.iter().find(|i| i.kind == kind).ok_or_else(|| {
            StageError::Config(format!(
                "stage `{}` needs a dependency of kind `{kind}` in its `deps`",
                self.stage
            ))
        })
    }

    /// The single input of this stage, whatever its kind.
    pub fn single_input(&self) -> Result<&Input, StageError> {
        match self.inputs {
            [one] => Ok(one),
            _ => Err(StageError::Config(format!(
                "stage `{}` needs exactly one dependency, it has {}",
                self.stage,
                self.inputs.len()
            ))),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Returns `Err(Cancelled)` once Ctrl-C was pressed.
    pub fn check_cancelled(&self) -> Result<(), StageError> {
        if self.is_cancelled() {
            Err(StageError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// A persistent folder for resumable state that outlives one run and is
    /// shared by every run whose `identity` is equal, e.g. training
    /// checkpoints keyed by every parameter except `steps`, so that raising
    /// `steps` resumes the shorter run. The stage must write into it
    /// atomically (temp file + rename) and must not trust it blindly.
    pub fn state_dir(&self, kind: &str, identity: &blake3::Hash) -> std::io::Result<PathBuf> {
        let dir = self.state_root.join(kind).join(identity.to_hex().as_str());
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A parameter combination or dependency layout the stage cannot use.
    #[error("{0}")]
    Config(String),
    /// An input the stage cannot use (no usable song at all, say).
    #[error("{0}")]
    Input(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The user pressed Ctrl-C.
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

impl StageError {
    /// Wraps an I/O error with what was being done and on which path.
    pub fn io(context: impl std::fmt::Display, source: std::io::Error) -> Self {
        StageError::Io {
            context: context.to_string(),
            source,
        }
    }
}

/// Adds context to I/O results: `fs::read(&p).ctx(|| format!("reading {}", p.display()))?`.
pub trait IoContext<T> {
    fn ctx<C: std::fmt::Display>(self, what: impl FnOnce() -> C) -> Result<T, StageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<C: std::fmt::Display>(self, what: impl FnOnce() -> C) -> Result<T, StageError> {
        self.map_err(|e| StageError::io(what(), e))
    }
}

/// A stage kind: scrape, encode, limit, vocab, train, sample, command.
pub trait StageKind: Send + Sync {
    /// The name used in `kind = "..."`.
    fn name(&self) -> &'static str;
    /// Bumped whenever the output for the same inputs changes; part of the key.
    fn version(&self) -> u32;
    /// One line for `vgmake dag` and the README.
    fn doc(&self) -> &'static str;
    /// The declared parameters.
    fn params(&self) -> Vec<ParamSpec>;
    /// Extra checks across parameters, after each was type-checked
    /// (`min_events <= max_events`, say). Messages name the parameter.
    fn validate(&self, _params: &Params) -> Result<(), String> {
        Ok(())
    }
    /// Inputs from outside the cache that enter the key (source stages:
    /// the local corpus folder; `command`: allow-listed environment
    /// variables and script files).
    fn external_inputs(
        &self,
        _params: &Params,
        _project_dir: &Path,
        _data_dir: &Path,
    ) -> Result<ExternalInputs, StageError> {
        Ok(ExternalInputs::default())
    }
    /// Does the work. Writes `metrics.json` into the output folder if it has
    /// numbers worth comparing (shown by `vgmake show` and `compare`).
    fn run(&self, ctx: &StageContext) -> Result<(), StageError>;
}
