//! The build history, `cache/builds.jsonl`: one line per build, appended
//! in one buffered write at its end. `log`, `why` and `gc` read it.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::outcome::Status;

/// One build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Unix time it finished.
    pub finished: u64,
    /// The variants it built (several under `--all-variants` or a sweep).
    #[serde(alias = "variant", deserialize_with = "one_or_many")]
    pub variants: Vec<String>,
    /// Its `--set` arguments.
    #[serde(default)]
    pub sets: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    pub seconds: f64,
    pub stages: Vec<HistoryStage>,
}

/// One stage of one variant in a build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryStage {
    pub name: String,
    pub variant: String,
    pub status: Status,
    pub key: Option<String>,
    pub output: Option<String>,
    pub seconds: f64,
}

impl HistoryEntry {
    /// How `stage` of `variant` ended in this build, if it was part of it.
    pub fn stage(&self, variant: &str, stage: &str) -> Option<&HistoryStage> {
        self.stages
            .iter()
            .find(|s| s.variant == variant && s.name == stage)
    }
}

/// Histories written before variants were a list held them space-joined.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(' ').map(str::to_string).collect(),
        OneOrMany::Many(v) => v,
    })
}

/// Appends `entry` as one line, in one write.
pub fn append(path: &Path, entry: &HistoryEntry) -> io::Result<()> {
    let mut line = serde_json::to_vec(entry)?;
    line.push(b'\n');
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(&line)
}

/// Every entry, oldest first. A line that cannot be read is an error
/// naming it: `gc` must not decide what to keep from a history it cannot
/// read.
pub fn read(path: &Path) -> Result<Vec<HistoryEntry>, String> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_old_space_joined_variants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("builds.jsonl");
        let entry = HistoryEntry {
            finished: 1,
            variants: vec!["default".into(), "short".into()],
            sets: vec![],
            targets: vec![],
            seconds: 0.5,
            stages: vec![HistoryStage {
                name: "limit".into(),
                variant: "short".into(),
                status: Status::Cutoff,
                key: Some("k".into()),
                output: None,
                seconds: 0.0,
            }],
        };
        append(&path, &entry).unwrap();
        let old = r#"{"finished":2,"variant":"default short","sets":[],"targets":[],"seconds":1.0,"stages":[]}"#;
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(format!("{old}\n").as_bytes())
            .unwrap();
        let read = read(&path).unwrap();
        assert_eq!(read[0], entry);
        assert_eq!(read[1].variants, ["default", "short"]);
        assert_eq!(
            read[0].stage("short", "limit").unwrap().status,
            Status::Cutoff
        );
        fs::write(&path, "garbage\n").unwrap();
        assert!(super::read(&path).unwrap_err().contains("builds.jsonl:1"));
    }
}
