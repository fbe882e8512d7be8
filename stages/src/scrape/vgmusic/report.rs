//! `index.json` (every stored song, sorted by path) and `report.json` (per
//! console counts and every song not stored, with the reason). Both hold
//! only what the output is made of, never run-to-run noise such as retries
//! or timings (those go to the stage log), so that a refresh that finds
//! nothing new leaves the output folder byte-identical.

use std::collections::BTreeMap;

use serde::Serialize;

use super::listing::ListedSong;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndexEntry {
    /// Relative to the output folder: `<console>/<game>/<file>`.
    pub path: String,
    pub console: String,
    pub game: String,
    pub title: String,
    pub sequencer: String,
    pub url: String,
    pub size: u64,
    pub md5: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ConsoleReport {
    /// Songs on the console page.
    pub listed: u64,
    /// Songs taken (all, or the first `max_files`).
    pub selected: u64,
    pub downloaded: u64,
    pub dead_links: u64,
    pub bad_files: u64,
    /// Still failing after every retry (timeouts, 5xx, cut-short bodies).
    pub failed: u64,
    /// Forbidden by robots.txt.
    pub disallowed: u64,
    /// Links to another site or scheme than `base_url`: never requested.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Why the page itself could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_error: Option<String>,
}

/// A song that was not stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    pub console: String,
    pub game: String,
    pub title: String,
    pub url: String,
    pub reason: String,
}

impl Problem {
    pub fn new(console: &str, song: &ListedSong, reason: impl Into<String>) -> Self {
        Problem {
            console: console.to_string(),
            game: song.game.clone(),
            title: song.title.clone(),
            url: song.url.to_string(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub source: String,
    pub base_url: String,
    /// Total songs stored.
    pub downloaded: u64,
    pub consoles: BTreeMap<String, ConsoleReport>,
    pub dead_links: Vec<Problem>,
    pub bad_files: Vec<Problem>,
    pub failed: Vec<Problem>,
    pub disallowed: Vec<Problem>,
    /// Links to another site or scheme than `base_url`, never requested.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Problem>,
    /// Rows of a listing page that could not be read.
    pub listing_problems: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Pretty JSON with a final newline.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("plain data serializes");
    bytes.push(b'\n');
    bytes
}
