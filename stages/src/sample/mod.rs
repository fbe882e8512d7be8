//! The `sample` stage kind: new songs from the trained model, as token
//! lines, MIDI files, chip-synth WAVs and piano rolls, with music metrics
//! beside the validation songs'.
//!
//! - [`grammar`]: the mask that keeps every drawn token valid;
//! - [`sampler`]: temperature, top-k, top-p;
//! - [`generate`]: the generation loop (KV cache, prompt, closing notes);
//! - [`check`]: an independent validity check of a token line;
//! - [`score`], [`voices`], [`synth`], [`wav`]: audio without a SoundFont;
//! - [`roll`]: piano-roll PNGs;
//! - [`metrics`], [`overlap`]: music metrics, histogram and KDE overlap;
//! - [`evaluate`]: reference songs, guard defaults, ceiling, continuation, report;
//! - [`files`]: the same synth and roll for any MIDI file (`vgmake render`,
//!   `vgmake roll`);
//! - [`kind`]: the stage itself.

pub mod check;
pub mod evaluate;
pub mod files;
pub mod generate;
pub mod grammar;
pub mod kind;
pub mod metrics;
pub mod overlap;
pub mod reference;
pub mod roll;
pub mod sampler;
pub mod score;
pub mod synth;
pub mod voices;
pub mod wav;

pub use files::{piano_roll_file, render_midi_file};
pub use kind::SampleKind;
