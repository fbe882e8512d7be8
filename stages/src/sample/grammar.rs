//! The grammar mask: which tokens keep a song valid at this point.
//!
//! A song is valid when it opens with `start`, ends with `finish`, every
//! `end:` closes a note that is sounding (same program, pitch and, when the
//! end carries one, velocity) and started at an earlier step, no sounding
//! note starts again, and at least one note was played before `finish`.
//! [`SongState`] tracks what that needs in flat arrays, so testing every
//! vocabulary entry each step costs one array read per token.

use crate::dataset::{PAD_ID, UNK_ID};
use crate::midi::tokens::Token;

/// Slots of (program 0..=128) x (pitch 0..=127).
const SLOTS: usize = 129 * 128;

fn slot(program: u8, pitch: u8) -> usize {
    program as usize * 128 + pitch as usize
}

/// The vocabulary parsed once: `tokens[id]` is `None` for the special ids
/// (`<pad>`, `<unk>`) and anything outside the grammar, which are never drawn.
#[derive(Debug, Clone)]
pub struct Grammar {
    pub tokens: Vec<Option<Token>>,
    /// End tokens carry the start's velocity (`end:i1:v60:64`) unless every
    /// end token of the vocabulary has none (`note_off_velocity = false`).
    pub end_velocity: bool,
}

impl Grammar {
    pub fn new(vocab: &[String]) -> Grammar {
        let tokens: Vec<Option<Token>> = vocab
            .iter()
            .enumerate()
            .map(|(id, text)| {
                if id as u32 == PAD_ID || id as u32 == UNK_ID {
                    None
                } else {
                    Token::parse(text)
                }
            })
            .collect();
        let mut ends = tokens.iter().flatten().filter_map(|t| match t {
            Token::NoteOff { velocity, .. } => Some(velocity.is_some()),
            _ => None,
        });
        let end_velocity = ends.next().is_none_or(|first| first || ends.any(|v| v));
        Grammar {
            tokens,
            end_velocity,
        }
    }

    /// The id of `token`'s text in the vocabulary.
    pub fn id_of(&self, token: &Token) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t.as_ref() == Some(token))
            .map(|i| i as u32)
    }

    /// Writes into `allowed[id]` whether `id` may come next in `state`.
    /// With `last` (the last token the line has room for) and no note
    /// played yet, only note starts are allowed, so that the song the
    /// closing tokens end is never empty.
    pub fn mask(&self, state: &SongState, last: bool, allowed: &mut Vec<bool>) {
        let notes_only = last && !state.has_played();
        allowed.clear();
        allowed.extend(self.tokens.iter().map(|t| {
            t.as_ref().is_some_and(|t| {
                state.allows(t) && (!notes_only || matches!(t, Token::NoteOn { .. }))
            })
        }));
    }
}

/// Where a song being written stands.
#[derive(Debug, Clone)]
pub struct SongState {
    /// Grid steps elapsed.
    pub now: u64,
    /// Per (program, pitch): the step and velocity of the sounding note.
    sounding: Vec<Option<(u64, u8)>>,
    open: usize,
    played: bool,
    started: bool,
    finished: bool,
}

impl Default for SongState {
    fn default() -> Self {
        SongState {
            now: 0,
            sounding: vec![None; SLOTS],
            open: 0,
            played: false,
            started: false,
            finished: false,
        }
    }
}

impl SongState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether a note has started yet (`finish` needs one).
    pub fn has_played(&self) -> bool {
        self.played
    }

    /// Notes sounding now.
    pub fn open_notes(&self) -> usize {
        self.open
    }

    /// Whether `token` keeps the song valid after what came before.
    pub fn allows(&self, token: &Token) -> bool {
        if self.finished {
            return false;
        }
        if !self.started {
            return *token == Token::Start;
        }
        match *token {
            Token::Start => false,
            Token::Finish => self.played,
            Token::Wait(_) | Token::Tempo(_) => true,
            Token::NoteOn { program, pitch, .. } => self.sounding[slot(program, pitch)].is_none(),
            Token::NoteOff {
                program,
                velocity,
                pitch,
            } => match self.sounding[slot(program, pitch)] {
                Some((start, v)) => start < self.now && velocity.is_none_or(|e| e == v),
                None => false,
            },
        }
    }

    /// Moves the state past `token` (which [`SongState::allows`] accepted).
    pub fn apply(&mut self, token: &Token) {
        match *token {
            Token::Start => self.started = true,
            Token::Finish => self.finished = true,
            Token::Wait(n) => self.now += n as u64,
            Token::Tempo(_) => {}
            Token::NoteOn {
                program,
                velocity,
                pitch,
            } => {
                self.sounding[slot(program, pitch)] = Some((self.now, velocity));
                self.open += 1;
                self.played = true;
            }
            Token::NoteOff { program, pitch, .. } => {
                if self.sounding[slot(program, pitch)].take().is_some() {
                    self.open -= 1;
                }
            }
        }
    }

    /// The tokens that end the song validly from here: a one-step wait when a
    /// sounding note started at this very step (so that it is not empty),
    /// an `end:` for every sounding note by (program, pitch), then `finish`.
    pub fn closing_tokens(&self, end_velocity: bool) -> Vec<Token> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        let open: Vec<(usize, (u64, u8))> = self
            .sounding
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .collect();
        if open.iter().any(|(_, (start, _))| *start >= self.now) {
            out.push(Token::Wait(1));
        }
        for (i, (_, velocity)) in open {
            out.push(Token::NoteOff {
                program: (i / 128) as u8,
                velocity: end_velocity.then_some(velocity),
                pitch: (i % 128) as u8,
            });
        }
        out.push(Token::Finish);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(pitch: u8) -> Token {
        Token::NoteOn {
            program: 80,
            velocity: 100,
            pitch,
        }
    }
    fn end(pitch: u8, velocity: Option<u8>) -> Token {
        Token::NoteOff {
            program: 80,
            velocity,
            pitch,
        }
    }

    #[test]
    fn follows_the_rules_of_a_song() {
        let mut s = SongState::new();
        assert!(!s.allows(&note(60)), "nothing before start");
        assert!(s.allows(&Token::Start));
        s.apply(&Token::Start);
        assert!(!s.allows(&Token::Start), "one start");
        assert!(!s.allows(&Token::Finish), "finish needs a note played");
        assert!(!s.allows(&end(60, Some(100))), "end of a silent note");
        s.apply(&note(60));
        assert!(!s.allows(&note(60)), "second start of a sounding note");
        assert!(s.allows(&note(61)));
        assert!(!s.allows(&end(60, Some(100))), "an empty note");
        s.apply(&Token::Wait(4));
        assert!(!s.allows(&end(60, Some(90))), "wrong velocity");
        assert!(s.allows(&end(60, Some(100))));
        assert!(s.allows(&end(60, None)));
        assert!(s.allows(&Token::Finish));
        assert_eq!(s.open_notes(), 1);
        s.apply(&end(60, Some(100)));
        assert_eq!(s.open_notes(), 0);
        s.apply(&Token::Finish);
        assert!(!s.allows(&Token::Wait(1)), "nothing after finish");
    }

    #[test]
    fn closing_waits_for_fresh_notes_and_ends_all() {
        let mut s = SongState::new();
        for t in [Token::Start, note(64), Token::Wait(2), note(60)] {
            s.apply(&t);
        }
        let text: Vec<String> = s
            .closing_tokens(true)
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            text,
            ["wait:1", "end:i80:v100:60", "end:i80:v100:64", "finish"]
        );
        assert_eq!(
            s.closing_tokens(false)[1].to_string(),
            "end:i80:60",
            "the vocabulary's end form"
        );
    }

    #[test]
    fn special_and_unknown_ids_are_never_allowed() {
        let vocab: Vec<String> = ["<pad>", "<unk>", "start", "bogus", "wait:4"]
            .map(String::from)
            .to_vec();
        let g = Grammar::new(&vocab);
        let mut s = SongState::new();
        s.apply(&Token::Start);
        let mut allowed = Vec::new();
        g.mask(&s, false, &mut allowed);
        assert_eq!(allowed, [false, false, false, false, true]);
        g.mask(&s, true, &mut allowed);
        assert_eq!(allowed, [false; 5], "the last token must be a note");
        assert!(g.end_velocity);
    }
}
