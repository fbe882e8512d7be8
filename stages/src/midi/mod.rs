//! The MIDI codec: files to MuseNet-style token lines and back.
//!
//! - [`read`]: SMF / RMID bytes to a note list (midly underneath);
//! - [`encoder`]: a note list to a token line on a grid;
//! - [`tokens`]: the token grammar (text <-> [`tokens::Token`]);
//! - [`decode`]: a token line to SMF bytes;
//! - [`duration`]: note lengths of the `note_format = "duration"` tokens;
//! - [`instruments`], [`transpose`]: vocabulary-shrinking options.
//!
//! The CLI's `vgmake encode` / `vgmake decode` call [`encode_file`] and
//! [`decode_tokens`].

pub mod decode;
pub mod duration;
pub mod encoder;
pub mod instruments;
mod interner;
pub(crate) mod radix;
pub mod read;
pub mod tokens;
pub mod transpose;

use std::path::Path;

pub use decode::{DecodeOptions, decode_tokens, parse_tokens};
pub use duration::NoteFormat;
pub use instruments::InstrumentGroups;
pub use read::{DRUM_PROGRAM, read_song};
pub use transpose::Transpose;

/// Bumped whenever the same file and options give a different token line
/// (part of the encode stage's per-song memo key).
pub const CODEC_VERSION: u32 = 1;

/// Why a file could not be encoded (or a token line decoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MidiError {
    #[error("empty file")]
    Empty,
    #[error("not a MIDI file (starts with \"{0}\")")]
    NotMidi(String),
    #[error("malformed MIDI: {0}")]
    Malformed(String),
    #[error("no notes")]
    NoNotes,
    #[error("cannot read the file: {0}")]
    Io(String),
    /// Past one of the reader's limits (file size, events, length).
    #[error("{0}")]
    TooBig(String),
    #[error("token {index} `{token}` is not a valid token")]
    BadToken { index: usize, token: String },
}

/// The encoding options (the encode stage's parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Grid steps per quarter note.
    pub steps_per_beat: u32,
    /// Velocities rounded to multiples of this.
    pub velocity_step: u8,
    /// Tempos (bpm) rounded to multiples of this.
    pub tempo_step: u32,
    /// End tokens repeat the start's velocity (`end:i1:v60:64`) or not (`end:i1:64`).
    pub note_off_velocity: bool,
    pub instrument_groups: InstrumentGroups,
    pub transpose: Transpose,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            steps_per_beat: 16,
            velocity_step: 10,
            tempo_step: 10,
            note_off_velocity: true,
            instrument_groups: InstrumentGroups::None,
            transpose: Transpose::None,
        }
    }
}

impl EncodeOptions {
    /// A canonical description, hashed into memo keys.
    pub fn fingerprint(&self) -> String {
        format!(
            "codec={CODEC_VERSION} spb={} vstep={} tstep={} offvel={} groups={} transpose={}",
            self.steps_per_beat,
            self.velocity_step,
            self.tempo_step,
            self.note_off_velocity,
            self.instrument_groups.name(),
            self.transpose.name()
        )
    }

    /// [`EncodeOptions::fingerprint`] with the note format (the on/off
    /// format's is the plain fingerprint, so its memo keys stay).
    pub fn fingerprint_as(&self, format: NoteFormat) -> String {
        match format {
            NoteFormat::OnOff => self.fingerprint(),
            NoteFormat::Duration => format!("{} format=duration", self.fingerprint()),
        }
    }
}

/// Encodes the bytes of a MIDI file into one token line (on/off format).
pub fn encode_bytes(bytes: &[u8], options: &EncodeOptions) -> Result<String, MidiError> {
    encode_bytes_as(bytes, options, NoteFormat::OnOff)
}

/// Encodes the bytes of a MIDI file into one token line in a note format.
pub fn encode_bytes_as(
    bytes: &[u8],
    options: &EncodeOptions,
    format: NoteFormat,
) -> Result<String, MidiError> {
    let song = read_song(bytes)?;
    Ok(encoder::encode_song_as(&song, options, format))
}

/// Encodes the bytes of a MIDI file into its tokens interned (the encode
/// stage's form, [`encoder::Interned`]) in a note format.
pub fn encode_bytes_interned(
    bytes: &[u8],
    options: &EncodeOptions,
    format: NoteFormat,
) -> Result<encoder::Interned, MidiError> {
    let song = read_song(bytes)?;
    Ok(encoder::encode_song_interned(&song, options, format))
}

/// Encodes a MIDI file into one token line.
pub fn encode_file(path: &Path, options: &EncodeOptions) -> Result<String, MidiError> {
    encode_bytes(&read::read_file(path)?, options)
}

/// Hand-made files for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// A standard MIDI file (format 0 for one track, else 1) with the given
    /// ticks per quarter and raw track bodies.
    pub fn smf(tpq: u16, tracks: &[&[u8]]) -> Vec<u8> {
        let mut out = b"MThd\0\0\0\x06".to_vec();
        let format: u16 = if tracks.len() == 1 { 0 } else { 1 };
        out.extend_from_slice(&format.to_be_bytes());
        out.extend_from_slice(&(tracks.len() as u16).to_be_bytes());
        out.extend_from_slice(&tpq.to_be_bytes());
        for body in tracks {
            out.extend_from_slice(b"MTrk");
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_interned_are_the_songs_codes_and_bad_bytes_an_error() {
        let body = [
            0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00,
        ];
        let bytes = testing::smf(96, &[&body]);
        let options = EncodeOptions::default();
        let song = read_song(&bytes).unwrap();
        for format in [NoteFormat::OnOff, NoteFormat::Duration] {
            let interned = encode_bytes_interned(&bytes, &options, format).unwrap();
            assert_eq!(
                interned.to_codes(),
                encoder::encode_song_codes(&song, &options, format)
            );
        }
        assert!(encode_bytes_interned(b"not MIDI", &options, NoteFormat::OnOff).is_err());
    }
}
