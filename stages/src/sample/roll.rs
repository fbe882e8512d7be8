//! The piano roll: time (beats) across, pitch up, one colour per
//! instrument, bar lines every four beats, a legend below.

use std::path::Path;

use super::score::Score;
use crate::midi::DRUM_PROGRAM;
use crate::plot::{Canvas, GREY, Rgb, WHITE};

const LEFT: i64 = 28;
const TOP: i64 = 8;
const RIGHT: i64 = 8;
/// Plot width for a long song; short ones get up to `MAX_PX_PER_BEAT`.
const PLOT_WIDTH: f64 = 1600.0;
const MAX_PX_PER_BEAT: f64 = 32.0;
const PX_PER_PITCH: i64 = 4;
const LEGEND_ROW: i64 = 12;
const LEGEND_COLUMN: i64 = 100;

/// Distinct colours, handed to instruments in program order.
const PALETTE: [Rgb; 12] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [188, 189, 34],
    [23, 190, 207],
    [57, 59, 121],
    [173, 73, 74],
    [99, 121, 57],
];
const DRUM_COLOUR: Rgb = [90, 90, 90];

/// GM families, for the legend.
const FAMILIES: [&str; 16] = [
    "piano",
    "chrom perc",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth lead",
    "synth pad",
    "synth fx",
    "ethnic",
    "percussive",
    "sound fx",
];

/// The instruments of `score` in program order, each with its colour.
pub fn instrument_colours(score: &Score) -> Vec<(u8, Rgb)> {
    let mut programs: Vec<u8> = score.notes.iter().map(|n| n.program).collect();
    programs.sort_unstable();
    programs.dedup();
    let mut melodic = 0;
    programs
        .into_iter()
        .map(|p| {
            if p == DRUM_PROGRAM {
                (p, DRUM_COLOUR)
            } else {
                melodic += 1;
                (p, PALETTE[(melodic - 1) % PALETTE.len()])
            }
        })
        .collect()
}

/// Draws the roll of `score`.
pub fn draw(score: &Score) -> Canvas {
    let beats = score.end_beat().max(1.0);
    let px_per_beat = (PLOT_WIDTH / beats).min(MAX_PX_PER_BEAT);
    let (low, high) = pitch_span(score);
    let rows = (high - low + 1) as i64;
    let plot_w = (beats * px_per_beat).ceil() as i64;
    let plot_h = rows * PX_PER_PITCH;
    let colours = instrument_colours(score);
    let width = (LEFT + plot_w + RIGHT).max(200);
    // The legend in as many columns as fit under the plot.
    let columns = ((width - LEFT) / LEGEND_COLUMN).max(1) as usize;
    let legend_rows = colours.len().div_ceil(columns).max(1) as i64;
    let legend_h = LEGEND_ROW * legend_rows + 8;
    let height = TOP + plot_h + 8 + legend_h;
    let mut c = Canvas::new(width as u32, height as u32, WHITE);
    let y_of = |pitch: u8| TOP + (high as i64 - pitch as i64) * PX_PER_PITCH;
    // Octave lines at every C, labelled with the MIDI pitch.
    for pitch in low..=high {
        if pitch % 12 == 0 {
            let y = y_of(pitch) + PX_PER_PITCH - 1;
            c.line(LEFT, y, LEFT + plot_w, y, [230, 230, 230]);
            c.text(2, y - 4, &pitch.to_string(), 1, GREY);
        }
    }
    // Bar lines every four beats; on a long song only every n-th bar, so
    // that lines stay 2 px apart (and their number bounded by the width).
    let bars_per_line = (2.0 / (4.0 * px_per_beat)).ceil().max(1.0);
    let mut beat = 0.0;
    while beat <= beats {
        let x = LEFT + (beat * px_per_beat) as i64;
        c.line(x, TOP, x, TOP + plot_h, [225, 225, 235]);
        beat += 4.0 * bars_per_line;
    }
    for note in &score.notes {
        let colour = colours
            .iter()
            .find(|(p, _)| *p == note.program)
            .map_or(DRUM_COLOUR, |(_, c)| *c);
        let x0 = LEFT + (note.start * px_per_beat) as i64;
        let x1 = LEFT + (note.end * px_per_beat) as i64;
        c.fill_rect(
            x0,
            y_of(note.pitch),
            (x1 - x0).max(1),
            PX_PER_PITCH - 1,
            colour,
        );
    }
    let legend_top = TOP + plot_h + 8;
    for (i, (program, colour)) in colours.into_iter().enumerate() {
        let x = LEFT + (i % columns) as i64 * LEGEND_COLUMN;
        let y = legend_top + (i / columns) as i64 * LEGEND_ROW;
        c.fill_rect(x, y, 8, 6, colour);
        let name = if program == DRUM_PROGRAM {
            "drums".to_string()
        } else {
            format!("{program} {}", FAMILIES[program as usize / 8])
        };
        c.text(x + 12, y, &name, 1, [60, 60, 60]);
    }
    c
}

/// The lowest and highest pitch shown: the notes' span, at least an octave.
fn pitch_span(score: &Score) -> (u8, u8) {
    let low = score.notes.iter().map(|n| n.pitch).min().unwrap_or(60);
    let high = score.notes.iter().map(|n| n.pitch).max().unwrap_or(72);
    let low = low.saturating_sub(2);
    let high = high
        .saturating_add(2)
        .min(127)
        .max(low.saturating_add(12).min(127));
    (low, high)
}

/// Draws the roll of `score` into a PNG file.
pub fn write_roll(path: &Path, score: &Score) -> Result<(), String> {
    draw(score)
        .write_png(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::score::BeatNote;

    #[test]
    fn notes_appear_in_their_instrument_colour() {
        let note = |start, program, pitch| BeatNote {
            start,
            end: start + 2.0,
            program,
            pitch,
            velocity: 90,
        };
        let score = Score {
            notes: vec![note(0.0, 80, 72), note(2.0, 33, 40), note(4.0, 128, 36)],
            tempos: vec![],
        };
        let colours = instrument_colours(&score);
        assert_eq!(colours.len(), 3);
        assert_eq!(colours[2], (128, DRUM_COLOUR));
        let canvas = draw(&score);
        // The middle of the first note (beat 1, pitch 72) has program 80's colour.
        let px = 32.0f64.min(PLOT_WIDTH / 6.0);
        let (low, high) = pitch_span(&score);
        assert_eq!((low, high), (34, 74));
        let x = (LEFT as f64 + 1.0 * px) as u32;
        let y = (TOP + (high as i64 - 72) * PX_PER_PITCH + 1) as u32;
        assert_eq!(
            canvas.get(x, y),
            colours[1].1,
            "program 80 is the second colour"
        );
    }
}
