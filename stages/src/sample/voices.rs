//! Which chip voice plays a GM program: two pulse voices, a triangle and a
//! noise channel, as on the NES.
//!
//! - drums (program 128) -> noise, its colour and decay chosen by the drum
//!   (kick, snare, hi-hat, cymbal, tom);
//! - basses (32-39 the bass family, 43 contrabass, 58 tuba, 87 bass + lead)
//!   -> triangle;
//! - leads (40-41 violin and viola, 56-86 brass, reed, pipe, synth lead)
//!   -> pulse 1, 25% duty;
//! - everything else (pianos, organs, guitars, ensembles, pads, ...) ->
//!   pulse 2, 50% duty, or 12.5% for chromatic percussion and percussive
//!   programs (8-15, 112-119), whose bright thin tone suits bells.
//!
//! Plucked and struck programs (pianos, chromatic percussion, guitars,
//! pizzicato, harp, ethnic and percussive 104-119) fade while held; the
//! rest sustain.

use crate::midi::DRUM_PROGRAM;

/// A voice's waveform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wave {
    /// A pulse wave high for `duty` of each period.
    Pulse { duty: f32 },
    /// The NES's 32-step triangle.
    Triangle,
    /// A 15-bit LFSR clocked `rate` times per second.
    Noise { rate: f32 },
}

/// How one note sounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Voice {
    pub wave: Wave,
    /// Loudness at velocity 127.
    pub gain: f32,
    /// Time constant (s) of the fade while held; `None` = sustained.
    pub decay: Option<f32>,
    /// Drums ring for their decay whatever the note's length.
    pub one_shot: bool,
}

/// The voice of a note of `program` at `pitch`.
pub fn voice_for(program: u8, pitch: u8) -> Voice {
    if program == DRUM_PROGRAM {
        return drum_voice(pitch);
    }
    let plucked = matches!(program, 0..=15 | 24..=31 | 45 | 46 | 104..=119);
    let decay = plucked.then_some(0.6);
    let wave = match program {
        32..=39 | 43 | 58 | 87 => Wave::Triangle,
        40 | 41 | 56..=86 => Wave::Pulse { duty: 0.25 },
        8..=15 | 112..=119 => Wave::Pulse { duty: 0.125 },
        _ => Wave::Pulse { duty: 0.5 },
    };
    let gain = match wave {
        Wave::Triangle => 0.30,
        _ => 0.12,
    };
    Voice {
        wave,
        gain,
        decay,
        one_shot: false,
    }
}

/// GM percussion keys to noise: low and long for kicks, bright and short
/// for closed hi-hats, bright and long for cymbals.
fn drum_voice(pitch: u8) -> Voice {
    let (rate, decay, gain) = match pitch {
        35 | 36 => (1_800.0, 0.08, 0.35),
        37..=40 => (7_000.0, 0.10, 0.22),
        42 | 44 => (20_000.0, 0.03, 0.12),
        46 => (20_000.0, 0.18, 0.12),
        49 | 51 | 52 | 55 | 57 | 59 => (15_000.0, 0.40, 0.10),
        41 | 43 | 45 | 47 | 48 | 50 => (3_000.0, 0.12, 0.25),
        _ => (9_000.0, 0.06, 0.15),
    };
    Voice {
        wave: Wave::Noise { rate },
        gain,
        decay: Some(decay),
        one_shot: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_map_onto_the_four_chip_voices() {
        assert_eq!(voice_for(33, 40).wave, Wave::Triangle);
        assert_eq!(voice_for(80, 70).wave, Wave::Pulse { duty: 0.25 });
        assert_eq!(voice_for(0, 60).wave, Wave::Pulse { duty: 0.5 });
        assert!(voice_for(0, 60).decay.is_some(), "a piano fades");
        assert!(voice_for(48, 60).decay.is_none(), "strings sustain");
        let kick = voice_for(DRUM_PROGRAM, 36);
        let hat = voice_for(DRUM_PROGRAM, 42);
        assert!(kick.one_shot && matches!(kick.wave, Wave::Noise { .. }));
        assert!(kick.decay > hat.decay);
    }
}
