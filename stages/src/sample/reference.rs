//! One real song beside the samples: a validation song (the one a `val:N`
//! prompt continues, else the first) cut to `max_tokens` tokens, written as
//! the samples are (`reference.{txt,mid,wav,png}`), so that the report plays
//! what the corpus sounds like at the same length. Also the kind's report
//! declaration, which names these files.

use std::path::Path;

use serde_json::{Value as Json, json};

use super::kind::{merge, write_song};
use crate::api::*;

/// The reference files' stem.
pub const STEM: &str = "reference";

/// Writes the reference song; returns its entry for `metrics.json`.
pub fn write(
    out: &Path,
    line: &str,
    index: usize,
    max_tokens: usize,
    spb: u32,
    vocab_dir: &Path,
) -> Result<Json, StageError> {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let kept = &words[..words.len().min(max_tokens)];
    // A cut line ends where it stops: notes still sounding end there.
    let text = kept.join(" ");
    let (_, metrics) = write_song(out, STEM, &text, spb)?;
    let song = std::fs::read(vocab_dir.join("split.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Json>(&b).ok())
        .and_then(|s| s["val"][index].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("validation song {index}"));
    let mut entry = json!({
        "name": STEM,
        "song": song,
        "validation_index": index,
        "tokens": kept.len(),
        "cut": kept.len() < words.len(),
    });
    merge(&mut entry, &metrics);
    Ok(entry)
}

/// What the report shows of a sample stage: each sample's audio, piano
/// roll and MIDI file with its own metrics, and the reference song.
pub fn report_spec() -> ReportSpec {
    let number = |key, label| MetricSpec::output(key, label).decimals(2);
    ReportSpec {
        gallery: Some(GallerySpec {
            title: "Samples",
            prefix: "sample_",
            files: vec![
                MediaFile::new("wav", MediaKind::Audio, "chip-synth audio"),
                MediaFile::new("png", MediaKind::Image, "piano roll"),
                MediaFile::new("mid", MediaKind::Download, "MIDI file"),
            ],
            items: Some((
                JsonAt {
                    file: "metrics.json",
                    pointer: "/samples",
                },
                "name",
            )),
            item_metrics: vec![
                MetricSpec::output("tokens", "tokens").decimals(0),
                MetricSpec::output("notes", "notes").decimals(0),
                number("notes_per_beat", "notes/beat"),
                number("polyphony", "polyphony"),
                number("pitch_range", "pitch range").decimals(0),
                number("note_length_mean", "note length (beats)"),
                number("scale_consistency", "scale consistency"),
                number("groove_consistency", "groove consistency"),
            ],
            reference: Some(ReferenceSpec {
                stem: STEM,
                label: "a validation song of the corpus, cut to as many tokens as a sample",
                about: Some((
                    JsonAt {
                        file: "metrics.json",
                        pointer: "/reference",
                    },
                    "song",
                )),
            }),
        }),
        ..ReportSpec::default()
    }
}
