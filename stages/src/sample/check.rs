//! An independent check that a token line is a valid song, for the
//! `validity` metric and for tests of the grammar mask. It restates the
//! rules of [`super::grammar`] plainly (a map of sounding notes), then
//! decodes the line and parses the MIDI bytes back with midly.

use std::collections::BTreeMap;

use crate::midi::tokens::Token;
use crate::midi::{DecodeOptions, decode_tokens};

/// Replays tokens one at a time and says what breaks the grammar.
#[derive(Debug, Clone, Default)]
pub struct LineChecker {
    index: usize,
    now: u64,
    /// (program, pitch) -> (start step, velocity)
    sounding: BTreeMap<(u8, u8), (u64, u8)>,
    notes: usize,
    started: bool,
    finished: bool,
}

impl LineChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` or says why it is not valid here.
    pub fn push(&mut self, token: &Token) -> Result<(), String> {
        let at = self.index;
        let fail = |why: &str| Err(format!("token {at} `{token}`: {why}"));
        if self.finished {
            return fail("after finish");
        }
        if !self.started && *token != Token::Start {
            return fail("the song does not open with start");
        }
        match *token {
            Token::Start if self.started => return fail("a second start"),
            Token::Start => self.started = true,
            Token::Finish if self.notes == 0 => return fail("finish before any note"),
            Token::Finish => self.finished = true,
            Token::Wait(n) => self.now += n as u64,
            Token::Tempo(_) => {}
            Token::NoteOn {
                program,
                velocity,
                pitch,
            } => {
                if self.sounding.contains_key(&(program, pitch)) {
                    return fail("starts a note that is already sounding");
                }
                self.sounding.insert((program, pitch), (self.now, velocity));
                self.notes += 1;
            }
            Token::NoteOff {
                program,
                velocity,
                pitch,
            } => match self.sounding.get(&(program, pitch)) {
                None => return fail("ends a note that is not sounding"),
                Some(&(start, _)) if start == self.now => {
                    return fail("ends a note at the step it started (an empty note)");
                }
                Some(&(_, v)) if velocity.is_some_and(|e| e != v) => {
                    return fail("velocity differs from the note's start");
                }
                Some(_) => {
                    self.sounding.remove(&(program, pitch));
                }
            },
        }
        self.index += 1;
        Ok(())
    }

    /// Checks that the song ended properly.
    pub fn finish(&self) -> Result<(), String> {
        if !self.finished {
            return Err("the song does not end with finish".into());
        }
        if let Some((&(program, pitch), _)) = self.sounding.iter().next() {
            return Err(format!(
                "{} notes still sounding at finish (first i{program} pitch {pitch})",
                self.sounding.len()
            ));
        }
        Ok(())
    }
}

/// Checks a whole token line: grammar, then decoding to a MIDI file that
/// midly reads back.
pub fn check_line(text: &str, steps_per_beat: u32) -> Result<(), String> {
    let mut checker = LineChecker::new();
    for (index, word) in text.split_ascii_whitespace().enumerate() {
        let token =
            Token::parse(word).ok_or_else(|| format!("token {index} `{word}` is not a token"))?;
        checker.push(&token)?;
    }
    checker.finish()?;
    let bytes =
        decode_tokens(text, &DecodeOptions { steps_per_beat }).map_err(|e| e.to_string())?;
    midly::Smf::parse(&bytes).map_err(|e| format!("the decoded MIDI does not parse: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_song_and_names_what_is_wrong() {
        let good = "start tempo:120 i80:v100:60 wait:4 end:i80:v100:60 finish";
        assert_eq!(check_line(good, 16), Ok(()));
        for (bad, why) in [
            (
                "i80:v100:60 wait:4 end:i80:v100:60 finish",
                "open with start",
            ),
            ("start wait:4 end:i80:v100:60 finish", "not sounding"),
            (
                "start i80:v100:60 i80:v100:60 wait:1 finish",
                "already sounding",
            ),
            ("start i80:v100:60 end:i80:v100:60 finish", "empty note"),
            ("start i80:v100:60 wait:1 end:i80:v90:60 finish", "velocity"),
            ("start i80:v100:60 wait:1 finish", "still sounding"),
            ("start wait:4 finish", "before any note"),
            ("start i80:v100:60 wait:1 end:i80:v100:60", "does not end"),
            (
                "start i80:v100:60 wait:1 end:i80:v100:60 finish wait:1",
                "after finish",
            ),
            ("start <unk> finish", "not a token"),
        ] {
            let err = check_line(bad, 16).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
