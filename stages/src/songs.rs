//! The song-set layout that encode writes and limit, vocab (and sample) read:
//!
//! - `tokens.txt`: one song per line, in the order of `songs.json`;
//! - `songs.json`: `[{"path": ..., "blake3": ...}, ...]`: the source file
//!   (relative to the scrape output) and the blake3 of its bytes;
//! - `codec.json`: the encode options (decode needs `steps_per_beat`).
//!
//! One text file keeps limit and vocab at disk speed on 10,000 songs: a
//! single read, lines split in place, no per-song file opens.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::api::{IoContext, StageError};
use crate::midi::{CODEC_VERSION, EncodeOptions, InstrumentGroups, Transpose};

pub const TOKENS_FILE: &str = "tokens.txt";
pub const SONGS_FILE: &str = "songs.json";
pub const CODEC_FILE: &str = "codec.json";

/// One encoded song's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SongInfo {
    pub path: String,
    /// blake3 of the source file's bytes (hex): the train/validation split
    /// hashes it, so it does not move when encode options or filters change.
    pub blake3: String,
}

/// The encode options as stored in `codec.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecInfo {
    pub codec_version: u32,
    pub steps_per_beat: u32,
    pub velocity_step: u8,
    pub tempo_step: u32,
    pub note_off_velocity: bool,
    pub instrument_groups: String,
    pub transpose: String,
}

impl CodecInfo {
    pub fn from_options(options: &EncodeOptions) -> Self {
        CodecInfo {
            codec_version: CODEC_VERSION,
            steps_per_beat: options.steps_per_beat,
            velocity_step: options.velocity_step,
            tempo_step: options.tempo_step,
            note_off_velocity: options.note_off_velocity,
            instrument_groups: options.instrument_groups.name().into(),
            transpose: options.transpose.name().into(),
        }
    }

    pub fn options(&self) -> EncodeOptions {
        EncodeOptions {
            steps_per_beat: self.steps_per_beat,
            velocity_step: self.velocity_step,
            tempo_step: self.tempo_step,
            note_off_velocity: self.note_off_velocity,
            instrument_groups: InstrumentGroups::parse(&self.instrument_groups).unwrap_or_default(),
            transpose: Transpose::parse(&self.transpose).unwrap_or_default(),
        }
    }
}

/// A song set read into memory: `lines()[i]` is the song of `infos[i]`.
#[derive(Debug, Clone)]
pub struct SongSet {
    pub text: String,
    pub infos: Vec<SongInfo>,
    pub codec: CodecInfo,
}

impl SongSet {
    /// The token lines (without newlines).
    pub fn lines(&self) -> Vec<&str> {
        self.text.lines().filter(|l| !l.is_empty()).collect()
    }

    /// Reads a song set from `dir`, checking that the files agree.
    pub fn read(dir: &Path) -> Result<SongSet, StageError> {
        let path = |name: &str| dir.join(name);
        let text = fs::read_to_string(path(TOKENS_FILE))
            .ctx(|| format!("reading {}", path(TOKENS_FILE).display()))?;
        let json = |name: &str| -> Result<Vec<u8>, StageError> {
            fs::read(path(name)).ctx(|| format!("reading {}", path(name).display()))
        };
        let infos: Vec<SongInfo> = serde_json::from_slice(&json(SONGS_FILE)?)
            .map_err(|e| StageError::Input(format!("{}: {e}", path(SONGS_FILE).display())))?;
        let codec: CodecInfo = serde_json::from_slice(&json(CODEC_FILE)?)
            .map_err(|e| StageError::Input(format!("{}: {e}", path(CODEC_FILE).display())))?;
        let set = SongSet { text, infos, codec };
        let lines = set.text.lines().filter(|l| !l.is_empty()).count();
        if lines != set.infos.len() {
            return Err(StageError::Input(format!(
                "{} has {lines} songs but {} lists {}",
                path(TOKENS_FILE).display(),
                path(SONGS_FILE).display(),
                set.infos.len()
            )));
        }
        Ok(set)
    }
}

/// Writes a song set into `dir`.
pub fn write_song_set<'a>(
    dir: &Path,
    songs: impl IntoIterator<Item = (&'a str, &'a SongInfo)>,
    codec: &CodecInfo,
) -> Result<(), StageError> {
    let mut text = String::new();
    let mut infos = Vec::new();
    for (line, info) in songs {
        text.push_str(line);
        text.push('\n');
        infos.push(info);
    }
    let write = |name: &str, bytes: &[u8]| {
        fs::write(dir.join(name), bytes).ctx(|| format!("writing {}", dir.join(name).display()))
    };
    write(TOKENS_FILE, text.as_bytes())?;
    let json = |v: serde_json::Result<Vec<u8>>| v.map_err(|e| StageError::Other(e.to_string()));
    write(SONGS_FILE, &json(serde_json::to_vec_pretty(&infos))?)?;
    write(CODEC_FILE, &json(serde_json::to_vec_pretty(codec))?)?;
    Ok(())
}
