//! Instrument grouping, to shrink the vocabulary: every program of a group
//! becomes the group's representative program, which decode then plays.
//! Each representative belongs to its own group, so grouping twice changes
//! nothing (the round trip needs that).

use super::read::DRUM_PROGRAM;

/// How programs are grouped in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstrumentGroups {
    /// Every GM program keeps its number.
    #[default]
    None,
    /// The 16 GM families (piano, chromatic percussion, organ, ...); the
    /// representative is the family's first program.
    Family,
    /// Four roles of a chip tune: lead, harmony, bass and drums.
    Chip,
}

/// Representatives of the `chip` groups.
pub const CHIP_LEAD: u8 = 80; // Lead 1 (square)
pub const CHIP_HARMONY: u8 = 0; // Acoustic Grand Piano
pub const CHIP_BASS: u8 = 38; // Synth Bass 1

impl InstrumentGroups {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "family" => Some(Self::Family),
            "chip" => Some(Self::Chip),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Family => "family",
            Self::Chip => "chip",
        }
    }

    /// The program a note of `program` gets in tokens (128 = drums stays).
    pub fn map(&self, program: u8) -> u8 {
        if program == DRUM_PROGRAM {
            return program;
        }
        match self {
            Self::None => program,
            Self::Family => program / 8 * 8,
            Self::Chip => match program / 8 {
                4 => CHIP_BASS,
                // Guitar, brass, reed, pipe, synth lead: melody instruments.
                3 | 7 | 8 | 9 | 10 => CHIP_LEAD,
                _ => CHIP_HARMONY,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_is_idempotent_and_keeps_drums() {
        for groups in [
            InstrumentGroups::None,
            InstrumentGroups::Family,
            InstrumentGroups::Chip,
        ] {
            for program in 0..=128u8 {
                let once = groups.map(program);
                assert_eq!(groups.map(once), once, "{groups:?} {program}");
            }
            assert_eq!(groups.map(DRUM_PROGRAM), DRUM_PROGRAM);
        }
        assert_eq!(InstrumentGroups::Family.map(37), 32);
        assert_eq!(InstrumentGroups::Chip.map(33), CHIP_BASS);
        assert_eq!(InstrumentGroups::Chip.map(81), CHIP_LEAD);
        assert_eq!(InstrumentGroups::Chip.map(48), CHIP_HARMONY);
        let distinct: std::collections::BTreeSet<u8> =
            (0..=128).map(|p| InstrumentGroups::Chip.map(p)).collect();
        assert_eq!(distinct.len(), 4);
    }
}
