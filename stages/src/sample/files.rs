//! The synthesizer and the piano roll for any MIDI file, read through the
//! codec's reader (for `vgmake render` and `vgmake roll`).

use std::path::Path;

use super::roll::write_roll;
use super::score::Score;
use super::synth::{MAX_RENDER_SECONDS, SAMPLE_RATE, duration_seconds, render};
use super::wav::write_wav;
use crate::midi::read::read_file;
use crate::midi::read_song;

/// Reads through the codec, whose limits bound the song's size and length.
fn read_score(input: &Path) -> Result<Score, String> {
    let bytes = read_file(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let song = read_song(&bytes).map_err(|e| format!("{}: {e}", input.display()))?;
    Ok(Score::from_midi(&song))
}

/// Renders a MIDI file to a 16-bit 44.1 kHz mono WAV with the chip synth;
/// returns the audio's length in seconds. A song longer than
/// [`MAX_RENDER_SECONDS`] is refused.
pub fn render_midi_file(input: &Path, output: &Path) -> Result<f64, String> {
    let score = read_score(input)?;
    let seconds = duration_seconds(&score);
    if seconds > MAX_RENDER_SECONDS {
        return Err(format!(
            "{}: the song lasts {:.0} s, longer than the {MAX_RENDER_SECONDS:.0} s rendered at most",
            input.display(),
            seconds
        ));
    }
    let samples = render(&score);
    write_wav(output, &samples)?;
    Ok(samples.len() as f64 / SAMPLE_RATE as f64)
}

/// Draws a MIDI file's piano roll into a PNG.
pub fn piano_roll_file(input: &Path, output: &Path) -> Result<(), String> {
    write_roll(output, &read_score(input)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_draws_a_demo_file_and_names_a_bad_one() {
        let demo = crate::data::default_dir().join("demo/freedoom1/D_E1M2.mid");
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("a.wav");
        let seconds = render_midi_file(&demo, &wav).unwrap();
        assert!(seconds > 10.0, "{seconds}");
        let reader = hound::WavReader::open(&wav).unwrap();
        assert_eq!(reader.len() as f64, (seconds * 44_100.0).round());
        let png = dir.path().join("a.png");
        piano_roll_file(&demo, &png).unwrap();
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
        let bad = dir.path().join("bad.mid");
        std::fs::write(&bad, b"hello").unwrap();
        let err = render_midi_file(&bad, &wav).unwrap_err();
        assert!(
            err.contains("bad.mid") && err.contains("not a MIDI file"),
            "{err}"
        );
    }
}
