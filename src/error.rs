//! The engine's errors. Each says what was being done and on which file,
//! key or stage; `commands` turns them into a message and an exit code.

use std::io;

use vgmake_api::StageError;

use crate::diagnostic::{Diagnostic, Diagnostics};

/// Why a command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `pipeline.toml` or an override is wrong: every problem, with where.
    #[error("{0}")]
    Pipeline(#[from] Diagnostics),
    /// A target names no stage.
    #[error("{0}")]
    Target(Diagnostic),
    /// A command-line argument that is not about the pipeline.
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("the project is locked by another build ({holder}); try again when it ends")]
    Locked { holder: String },
    /// A stage's key cannot be computed: its external inputs cannot be read.
    #[error("stage `{stage}`: reading its inputs: {source}")]
    Key {
        stage: String,
        #[source]
        source: StageError,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done and on which path.
    pub fn io(context: impl std::fmt::Display, source: io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }
}

/// Adds context to I/O results: `fs::read(&p).context(|| format!("reading {}", p.display()))?`.
pub trait Context<T> {
    fn context<C: std::fmt::Display>(self, what: impl FnOnce() -> C) -> Result<T, Error>;
}

impl<T> Context<T> for io::Result<T> {
    fn context<C: std::fmt::Display>(self, what: impl FnOnce() -> C) -> Result<T, Error> {
        self.map_err(|e| Error::io(what(), e))
    }
}

/// Why one stage did not come up to date.
#[derive(Debug, thiserror::Error)]
pub enum StageFailure {
    #[error(transparent)]
    Key(#[from] Error),
    #[error("input `{stage}` is damaged: {damage}")]
    DamagedInput { stage: String, damage: Damage },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("cancelled (Ctrl-C); finished items are kept for the next build")]
    Cancelled,
    /// The stage's own error.
    #[error("{0}")]
    Stage(StageError),
    #[error("internal error (panic) in stage kind `{kind}`: {message}")]
    Panic { kind: String, message: String },
    /// The cluster refused, lost or failed the stage's job.
    #[error("{0}")]
    Slurm(crate::slurm::SlurmError),
}

impl StageFailure {
    pub fn io(context: impl std::fmt::Display, source: io::Error) -> Self {
        StageFailure::Io {
            context: context.to_string(),
            source,
        }
    }
}

/// What is wrong with a cached output folder.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("manifest of output {0} is missing or unreadable")]
    NoManifest(String),
    #[error("manifest of output {0} does not match its name")]
    ManifestMismatch(String),
    #[error("output folder {0} is missing")]
    Missing(String),
    #[error("output folder {folder} was modified ({what})")]
    Modified { folder: String, what: String },
    #[error("reading {folder}: {source}")]
    Unreadable {
        folder: String,
        #[source]
        source: io::Error,
    },
}
