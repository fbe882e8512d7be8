//! An independent check that a token line is a valid song, for the
//! `validity` metric and for tests of the grammar mask. It restates the
//! rules of [`super::grammar`] plainly (a map of sounding notes), then
//! decodes the line and parses the MIDI bytes back with midly.

use std::collections::BTreeMap;

use crate::midi::tokens::Token;
use crate::midi::{DecodeOptions, NoteFormat, decode_tokens};

/// Replays tokens one at a time and says what breaks the grammar.
#[derive(Debug, Clone)]
pub struct LineChecker {
    format: NoteFormat,
    /// Steps of a bar (the longest `d:`; a whole bar may be tied on).
    bar: u64,
    index: usize,
    now: u64,
    /// (program, pitch) -> (start step, velocity, end step of a duration note)
    sounding: BTreeMap<(u8, u8), (u64, u8, u64)>,
    /// The duration note whose length comes next, and whether one must.
    pending: Option<((u8, u8), bool)>,
    notes: usize,
    started: bool,
    finished: bool,
}

impl Default for LineChecker {
    fn default() -> Self {
        LineChecker::with_format(NoteFormat::OnOff, 16)
    }
}

impl LineChecker {
    /// A checker of the on/off format.
    pub fn new() -> Self {
        Self::default()
    }

    /// A checker of `format` with `steps_per_beat` grid steps per beat.
    pub fn with_format(format: NoteFormat, steps_per_beat: u32) -> Self {
        LineChecker {
            format,
            bar: crate::midi::duration::bar_steps(steps_per_beat),
            index: 0,
            now: 0,
            sounding: BTreeMap::new(),
            pending: None,
            notes: 0,
            started: false,
            finished: false,
        }
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
        let duration = self.format == NoteFormat::Duration;
        if let Token::Duration(d) = *token {
            if !duration {
                return fail("a length in an on/off song");
            }
            let Some((key, _)) = self.pending else {
                return fail(
                    "a length that follows no note start (or a tie after less than a bar)",
                );
            };
            if d as u64 > self.bar {
                return fail("a length longer than a bar (tie whole bars instead)");
            }
            if let Some(note) = self.sounding.get_mut(&key) {
                note.2 += d as u64;
            }
            self.pending = (d as u64 == self.bar).then_some((key, false));
            self.index += 1;
            return Ok(());
        }
        if self.pending.is_some_and(|p| p.1) {
            return fail("a note start without its length");
        }
        self.pending = None;
        match *token {
            Token::Start if self.started => return fail("a second start"),
            Token::Start => self.started = true,
            Token::Finish if self.notes == 0 => return fail("finish before any note"),
            Token::Finish => self.finished = true,
            Token::Wait(n) => {
                self.now += n as u64;
                if duration {
                    let now = self.now;
                    self.sounding.retain(|_, note| note.2 > now);
                }
            }
            Token::Tempo(_) | Token::Duration(_) => {}
            Token::NoteOn {
                program,
                velocity,
                pitch,
            } => {
                if self.sounding.contains_key(&(program, pitch)) {
                    return fail("starts a note that is already sounding");
                }
                self.sounding
                    .insert((program, pitch), (self.now, velocity, self.now));
                self.notes += 1;
                if duration {
                    self.pending = Some(((program, pitch), true));
                }
            }
            Token::NoteOff { .. } if duration => return fail("an end token in a duration song"),
            Token::NoteOff {
                program,
                velocity,
                pitch,
            } => match self.sounding.get(&(program, pitch)) {
                None => return fail("ends a note that is not sounding"),
                Some(&(start, _, _)) if start == self.now => {
                    return fail("ends a note at the step it started (an empty note)");
                }
                Some(&(_, v, _)) if velocity.is_some_and(|e| e != v) => {
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
        if self.format == NoteFormat::OnOff
            && let Some((&(program, pitch), _)) = self.sounding.iter().next()
        {
            return Err(format!(
                "{} notes still sounding at finish (first i{program} pitch {pitch})",
                self.sounding.len()
            ));
        }
        Ok(())
    }
}

/// The note format of a token line: duration when its first note start is
/// followed by a `d:` token.
pub fn line_format(text: &str) -> NoteFormat {
    let mut words = text.split_ascii_whitespace();
    while let Some(word) = words.next() {
        if let Some(Token::NoteOn { .. }) = Token::parse(word) {
            return match words.next().and_then(Token::parse) {
                Some(Token::Duration(_)) => NoteFormat::Duration,
                _ => NoteFormat::OnOff,
            };
        }
    }
    NoteFormat::OnOff
}

/// Checks a whole token line (in the format of [`line_format`]): grammar,
/// then decoding to a MIDI file that midly reads back.
pub fn check_line(text: &str, steps_per_beat: u32) -> Result<(), String> {
    let mut checker = LineChecker::with_format(line_format(text), steps_per_beat);
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
        // Duration: lengths, a tie of a whole bar, a restart once it ended,
        // notes sounding at finish.
        let good = "start tempo:120 i80:v100:60 d:64 d:8 i81:v90:40 d:4 wait:4 \
                    i81:v90:40 d:2 wait:100 i80:v100:60 d:16 finish";
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
            (
                "start i80:v100:60 d:4 wait:2 end:i80:v100:60 finish",
                "end token",
            ),
            (
                "start i80:v100:60 d:4 i80:v100:62 wait:1 finish",
                "without its length",
            ),
            ("start i80:v100:60 d:4 d:4 finish", "follows no note start"),
            ("start i80:v100:60 d:65 finish", "longer than a bar"),
            (
                "start i80:v100:60 d:8 wait:4 i80:v100:60 d:1 finish",
                "already sounding",
            ),
            ("start i80:v100:60 d:4 i81:v100:60", "does not end"),
            ("start i80:v100:60 wait:2 d:4 finish", "in an on/off song"),
        ] {
            let err = check_line(bad, 16).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
