//! The built-in chip synthesizer: a [`Score`] to mono samples at 44.1 kHz,
//! with no SoundFont. Each note is one oscillator of its chip voice
//! ([`super::voices`]) under a short attack, an optional fade while held and
//! a release after its end; notes are summed, and the mix is scaled down
//! only when it would clip.
//!
//! The four voices are timbres, not channels: any number of notes of one
//! voice sound at once, because a strict four-channel chip would drop most
//! chords of a General MIDI file (and hide what the model wrote).

use super::score::Score;
use super::voices::{Wave, voice_for};

pub const SAMPLE_RATE: u32 = 44_100;
/// Linear attack of every note.
pub const ATTACK_SECONDS: f64 = 0.003;
/// Linear release after a note's end; the audio ends this long after the
/// last note's end.
pub const RELEASE_SECONDS: f64 = 0.05;
/// Mixes louder than this are scaled down to it.
const PEAK: f32 = 0.95;
/// The longest audio rendered (20 minutes, 212 MB of samples): a longer
/// song is cut here ([`render`]) or refused (`vgmake render`).
pub const MAX_RENDER_SECONDS: f64 = 1200.0;

/// How long `score` sounds, in seconds: up to the last note's end plus the
/// release (0 for no notes).
pub fn duration_seconds(score: &Score) -> f64 {
    let clock = score.clock();
    let end = score
        .notes
        .iter()
        .map(|n| clock.seconds(n.end))
        .fold(0.0, f64::max);
    if score.notes.is_empty() {
        return 0.0;
    }
    end + RELEASE_SECONDS
}

/// The number of samples rendered for `score`: up to the last note's end
/// plus the release, at most [`MAX_RENDER_SECONDS`].
pub fn rendered_len(score: &Score) -> usize {
    (duration_seconds(score).min(MAX_RENDER_SECONDS) * SAMPLE_RATE as f64).ceil() as usize
}

/// Renders `score` into samples in -1..=1 (its first
/// [`MAX_RENDER_SECONDS`] when it is longer).
pub fn render(score: &Score) -> Vec<f32> {
    let mut out = vec![0.0f32; rendered_len(score)];
    let clock = score.clock();
    let rate = SAMPLE_RATE as f64;
    for note in &score.notes {
        let start = (clock.seconds(note.start) * rate).round() as usize;
        let held = ((clock.seconds(note.end) * rate).round() as usize).max(start + 1);
        render_note(
            &mut out,
            start,
            held,
            note.program,
            note.pitch,
            note.velocity,
        );
    }
    let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak > PEAK {
        let scale = PEAK / peak;
        out.iter_mut().for_each(|s| *s *= scale);
    }
    out
}

/// Adds one note sounding from sample `start`, held until `held`.
fn render_note(out: &mut [f32], start: usize, held: usize, program: u8, pitch: u8, velocity: u8) {
    let voice = voice_for(program, pitch);
    let rate = SAMPLE_RATE as f32;
    let attack = (ATTACK_SECONDS * SAMPLE_RATE as f64) as usize;
    let release = (RELEASE_SECONDS * SAMPLE_RATE as f64) as usize;
    let (held, end) = match (voice.one_shot, voice.decay) {
        // A drum rings about five time constants, whatever its length.
        (true, Some(decay)) => {
            let ring = start + (5.0 * decay * rate) as usize;
            (ring, ring)
        }
        _ => (held, held + release),
    };
    let end = end.min(out.len());
    if start >= end {
        return;
    }
    let amplitude = voice.gain * velocity.min(127) as f32 / 127.0;
    // Per-sample fade factor: exp(-1 / (decay * rate)).
    let fade = voice.decay.map_or(1.0, |d| (-1.0 / (d * rate)).exp());
    let frequency = 440.0 * 2f32.powf((pitch as f32 - 69.0) / 12.0);
    let mut oscillator = Oscillator::new(voice.wave, frequency);
    let mut level = 1.0f32;
    let mut level_at_end = 1.0f32;
    for (i, sample) in out[start..end].iter_mut().enumerate() {
        let t = start + i;
        let envelope = if t < held {
            level_at_end = level;
            if i < attack {
                level * (i + 1) as f32 / attack as f32
            } else {
                level
            }
        } else {
            level_at_end * (1.0 - (t - held) as f32 / release as f32)
        };
        level *= fade;
        *sample += amplitude * envelope * oscillator.next();
    }
}

/// A phase-accumulator oscillator (32-bit phase, wrapping).
struct Oscillator {
    wave: Wave,
    phase: u32,
    step: u32,
    duty: u32,
    lfsr: u16,
    noise_out: f32,
}

impl Oscillator {
    fn new(wave: Wave, frequency: f32) -> Self {
        let hz = match wave {
            Wave::Noise { rate } => rate,
            _ => frequency,
        };
        let step = (hz as f64 / SAMPLE_RATE as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32;
        let duty = match wave {
            Wave::Pulse { duty } => (duty as f64 * 4_294_967_296.0) as u32,
            _ => 0,
        };
        Oscillator {
            wave,
            phase: 0,
            step,
            duty,
            lfsr: 1,
            noise_out: 1.0,
        }
    }

    #[inline]
    fn next(&mut self) -> f32 {
        let (phase, wrapped) = self.phase.overflowing_add(self.step);
        self.phase = phase;
        match self.wave {
            Wave::Pulse { .. } => {
                if phase < self.duty {
                    1.0
                } else {
                    -1.0
                }
            }
            Wave::Triangle => {
                // 32 steps: 15 down to 0, then 0 up to 15, as the NES plays it.
                let step = (phase >> 27) as i32;
                let level = if step < 16 { 15 - step } else { step - 16 };
                level as f32 / 7.5 - 1.0
            }
            Wave::Noise { .. } => {
                if wrapped {
                    // The NES noise LFSR: feedback from bits 0 and 1.
                    let bit = (self.lfsr ^ (self.lfsr >> 1)) & 1;
                    self.lfsr = (self.lfsr >> 1) | (bit << 14);
                    self.noise_out = if self.lfsr & 1 == 1 { 1.0 } else { -1.0 };
                }
                self.noise_out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::score::BeatNote;

    fn one_note(program: u8, pitch: u8, beats: f64) -> Score {
        Score {
            notes: vec![BeatNote {
                start: 0.0,
                end: beats,
                program,
                pitch,
                velocity: 100,
            }],
            tempos: vec![],
        }
    }

    #[test]
    fn length_is_the_last_end_plus_the_release() {
        // Four beats at the default 120 bpm = 2 s; + 0.05 s release.
        assert_eq!(rendered_len(&one_note(80, 69, 4.0)), 90_405);
        assert_eq!(render(&one_note(80, 69, 4.0)).len(), 90_405);
        assert!(render(&Score::default()).is_empty());
    }

    #[test]
    fn a_song_of_years_is_cut_at_the_limit() {
        // 2^36 beats at 120 bpm: about a thousand years.
        let score = one_note(80, 69, (1u64 << 36) as f64);
        assert_eq!(
            rendered_len(&score),
            (MAX_RENDER_SECONDS * SAMPLE_RATE as f64) as usize
        );
        assert!(duration_seconds(&score) > 1e10);
    }

    #[test]
    fn a_pulse_at_a440_has_its_pitch_and_duty() {
        let samples = render(&one_note(80, 69, 2.0));
        // One second: 440 periods = 880 sign changes (two per period).
        let second = &samples[..SAMPLE_RATE as usize];
        let changes = second
            .windows(2)
            .filter(|w| (w[0] > 0.0) != (w[1] > 0.0))
            .count();
        assert!((878..=882).contains(&changes), "{changes}");
        let high = second.iter().filter(|&&s| s > 0.0).count() as f64 / second.len() as f64;
        assert!((high - 0.25).abs() < 0.01, "25% duty, got {high}");
    }

    #[test]
    fn every_voice_makes_sound_and_drums_decay() {
        for (program, pitch) in [(33, 40), (0, 60), (10, 72), (128, 36), (128, 42)] {
            let samples = render(&one_note(program, pitch, 1.0));
            let rms = (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt();
            assert!(rms > 0.005, "program {program}: rms {rms}");
            assert!(samples.iter().all(|s| s.abs() <= 1.0));
        }
        let kick = render(&one_note(128, 36, 1.0));
        let energy = |r: std::ops::Range<usize>| kick[r].iter().map(|s| s * s).sum::<f32>();
        assert!(energy(0..2000) > 10.0 * energy(10_000..12_000));
    }
}
