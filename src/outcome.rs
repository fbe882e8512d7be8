//! How a stage ended in a build: what the build prints, `--json` emits and
//! the history keeps.

use serde::{Deserialize, Serialize};

/// How a stage ended in a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ran,
    Cached,
    /// Restored from the remote cache, every byte verified.
    Fetched,
    Cutoff,
    Failed,
    Skipped,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ran => "ran",
            Status::Cached => "cached",
            Status::Fetched => "fetched",
            Status::Cutoff => "cutoff",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        }
    }
}

/// One stage's line in the build output (and its `--json` object).
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub name: String,
    pub variant: String,
    /// `name`, or `variant/name` when a build covers several variants.
    #[serde(skip)]
    pub label: String,
    pub status: Status,
    pub key: Option<String>,
    pub output: Option<String>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
