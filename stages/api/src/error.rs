//! Why a stage failed.

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
