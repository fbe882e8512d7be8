//! The grammar mask: which tokens keep a song valid at this point.
//!
//! A song is valid when it opens with `start`, ends with `finish`, no
//! sounding note starts again, and at least one note was played before
//! `finish`. In the on/off format every `end:` closes a note that is
//! sounding (same program, pitch and, when the end carries one, velocity)
//! and started at an earlier step. In the duration format (a vocabulary
//! with `d:` tokens) every note start is followed by its length, `d:` tokens
//! of at most a bar, further `d:` only after a whole bar (a tie), and there
//! are no `end:` tokens; a note sounds until its length has passed.
//!
//! Two guards keep samples playable: `max_note_steps` (no note lasts longer:
//! in the on/off format a wait that would carry a note past it is masked,
//! so the note must end first; in the duration format longer lengths are
//! masked) and `max_polyphony` (no new melodic note while that many sound).
//! [`SongState`] tracks what that needs in flat arrays, so testing every
//! vocabulary entry each step costs one array read per token.

use crate::dataset::{PAD_ID, UNK_ID};
use crate::midi::DRUM_PROGRAM;
use crate::midi::NoteFormat;
use crate::midi::duration::bar_steps;
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
    /// The format (duration when the vocabulary has `d:` tokens) and the
    /// guards songs are written under (none until [`Grammar::with_guards`]).
    pub rules: Rules,
}

/// Which guards a mask applies (the grammar's own rules always apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guards {
    pub note_length: bool,
    pub polyphony: bool,
}

impl Guards {
    pub const ALL: Guards = Guards {
        note_length: true,
        polyphony: true,
    };
    pub const NONE: Guards = Guards {
        note_length: false,
        polyphony: false,
    };
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
        let format = if tokens
            .iter()
            .flatten()
            .any(|t| matches!(t, Token::Duration(_)))
        {
            NoteFormat::Duration
        } else {
            NoteFormat::OnOff
        };
        Grammar {
            tokens,
            end_velocity,
            rules: Rules {
                format,
                ..Rules::default()
            },
        }
    }

    /// The same grammar with `steps_per_beat` and the guards (0 = off).
    pub fn with_guards(
        mut self,
        steps_per_beat: u32,
        max_note_steps: u64,
        max_polyphony: usize,
    ) -> Self {
        self.rules.steps_per_beat = steps_per_beat;
        self.rules.max_note_steps = max_note_steps;
        self.rules.max_polyphony = max_polyphony;
        self
    }

    /// A fresh song state under this grammar's rules.
    pub fn state(&self) -> SongState {
        SongState::with_rules(self.rules)
    }

    /// The id of `token`'s text in the vocabulary.
    pub fn id_of(&self, token: &Token) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t.as_ref() == Some(token))
            .map(|i| i as u32)
    }

    /// Writes into `allowed[id]` whether `id` may come next in `state`
    /// (grammar and every guard of its rules).
    /// With `last` (the last token the line has room for) and no note
    /// played yet, only note starts are allowed, so that the song the
    /// closing tokens end is never empty.
    pub fn mask(&self, state: &SongState, last: bool, allowed: &mut Vec<bool>) {
        self.mask_with(state, last, Guards::ALL, allowed);
    }

    /// [`Grammar::mask`] with only the given guards.
    pub fn mask_with(
        &self,
        state: &SongState,
        last: bool,
        guards: Guards,
        allowed: &mut Vec<bool>,
    ) {
        let notes_only = last && !state.has_played();
        allowed.clear();
        allowed.extend(self.tokens.iter().map(|t| {
            t.as_ref().is_some_and(|t| {
                (!notes_only || matches!(t, Token::NoteOn { .. })) && state.allows_with(t, guards)
            })
        }));
    }
}

/// The format and guards a song is written under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub format: NoteFormat,
    /// Grid steps per beat (a tie is a whole bar of 4 beats).
    pub steps_per_beat: u32,
    /// No note lasts longer (grid steps; 0 = no guard).
    pub max_note_steps: u64,
    /// No new melodic note starts while this many sound (0 = no guard).
    pub max_polyphony: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            format: NoteFormat::OnOff,
            steps_per_beat: 16,
            max_note_steps: 0,
            max_polyphony: 0,
        }
    }
}

/// A sounding note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sound {
    start: u64,
    velocity: u8,
    /// Steps so far of a duration-format note (its `d:` tokens).
    length: u64,
}

/// What a duration-format note start needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Its first `d:` token.
    Length(usize),
    /// Nothing, but a whole-bar `d:` may be tied to another.
    Tie(usize),
}

/// Where a song being written stands.
#[derive(Debug, Clone)]
pub struct SongState {
    /// Grid steps elapsed.
    pub now: u64,
    pub rules: Rules,
    /// Per (program, pitch): the sounding note.
    sounding: Vec<Option<Sound>>,
    /// The slots sounding now.
    active: Vec<usize>,
    pending: Option<Pending>,
    played: bool,
    started: bool,
    finished: bool,
}

impl Default for SongState {
    fn default() -> Self {
        SongState::with_rules(Rules::default())
    }
}

impl SongState {
    /// The on/off format without guards.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_rules(rules: Rules) -> Self {
        SongState {
            now: 0,
            rules,
            sounding: vec![None; SLOTS],
            active: Vec::new(),
            pending: None,
            played: false,
            started: false,
            finished: false,
        }
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
        self.active.len()
    }

    /// Melodic notes sounding now.
    pub fn melodic_notes(&self) -> usize {
        self.active
            .iter()
            .filter(|&&s| s / 128 != DRUM_PROGRAM as usize)
            .count()
    }

    fn is_sounding(&self, slot: usize) -> bool {
        self.sounding[slot].is_some()
    }

    /// The longest wait allowed now (on/off format: a wait may not carry a
    /// sounding note past `max_note_steps`).
    fn wait_limit(&self, guards: Guards) -> u64 {
        if !guards.note_length
            || self.rules.max_note_steps == 0
            || self.rules.format == NoteFormat::Duration
        {
            return u64::MAX;
        }
        let oldest = self
            .active
            .iter()
            .filter_map(|&s| self.sounding[s].map(|n| n.start))
            .min();
        match oldest {
            Some(start) => self.rules.max_note_steps.saturating_sub(self.now - start),
            None => u64::MAX,
        }
    }

    /// Whether `token` keeps the song valid after what came before, under
    /// every guard.
    pub fn allows(&self, token: &Token) -> bool {
        self.allows_with(token, Guards::ALL)
    }

    /// Whether `token` keeps the song valid, under the given guards.
    pub fn allows_with(&self, token: &Token, guards: Guards) -> bool {
        if self.finished {
            return false;
        }
        if !self.started {
            return *token == Token::Start;
        }
        let duration = self.rules.format == NoteFormat::Duration;
        let bar = bar_steps(self.rules.steps_per_beat);
        let fits = |length: u64| {
            !guards.note_length
                || self.rules.max_note_steps == 0
                || length <= self.rules.max_note_steps
        };
        if let Some(pending) = self.pending {
            let (slot, required) = match pending {
                Pending::Length(s) => (s, true),
                Pending::Tie(s) => (s, false),
            };
            if let Token::Duration(d) = *token {
                let so_far = self.sounding[slot].map_or(0, |n| n.length);
                return (d as u64) <= bar && fits(so_far + d as u64);
            }
            if required {
                return false;
            }
        }
        match *token {
            Token::Start | Token::Duration(_) => false,
            Token::Finish => self.played,
            Token::Wait(n) => (n as u64) <= self.wait_limit(guards),
            Token::Tempo(_) => true,
            Token::NoteOn { program, pitch, .. } => {
                !self.is_sounding(slot(program, pitch))
                    && (!guards.polyphony
                        || self.rules.max_polyphony == 0
                        || program == DRUM_PROGRAM
                        || self.melodic_notes() < self.rules.max_polyphony)
            }
            Token::NoteOff {
                program,
                velocity,
                pitch,
            } => {
                !duration
                    && match self.sounding[slot(program, pitch)] {
                        Some(n) => n.start < self.now && velocity.is_none_or(|e| e == n.velocity),
                        None => false,
                    }
            }
        }
    }

    /// Moves the state past `token` (which [`SongState::allows`] accepted).
    pub fn apply(&mut self, token: &Token) {
        let duration = self.rules.format == NoteFormat::Duration;
        if let Token::Duration(d) = *token {
            if let Some(Pending::Length(s) | Pending::Tie(s)) = self.pending {
                if let Some(n) = &mut self.sounding[s] {
                    n.length += d as u64;
                }
                let bar = bar_steps(self.rules.steps_per_beat);
                self.pending = (d as u64 == bar).then_some(Pending::Tie(s));
            }
            return;
        }
        self.pending = None;
        match *token {
            Token::Start => self.started = true,
            Token::Finish => self.finished = true,
            Token::Duration(_) | Token::Tempo(_) => {}
            Token::Wait(n) => {
                self.now += n as u64;
                if duration {
                    let now = self.now;
                    let sounding = &mut self.sounding;
                    self.active.retain(|&s| match sounding[s] {
                        Some(note) if note.start + note.length <= now => {
                            sounding[s] = None;
                            false
                        }
                        _ => true,
                    });
                }
            }
            Token::NoteOn {
                program,
                velocity,
                pitch,
            } => {
                let s = slot(program, pitch);
                if self.sounding[s].is_none() {
                    self.active.push(s);
                }
                self.sounding[s] = Some(Sound {
                    start: self.now,
                    velocity,
                    length: 0,
                });
                self.played = true;
                if duration {
                    self.pending = Some(Pending::Length(s));
                }
            }
            Token::NoteOff { program, pitch, .. } => {
                let s = slot(program, pitch);
                if self.sounding[s].take().is_some() {
                    self.active.retain(|&a| a != s);
                }
            }
        }
    }

    /// The tokens that end the song validly from here. On/off: an `end:`
    /// for every sounding note that started before this step, then a
    /// one-step wait and the ends of those that started at it (so that none
    /// is empty), each by (program, pitch), then `finish`. Duration: a length for a note start still waiting for
    /// one (a beat, or less under the note-length guard), then `finish`.
    pub fn closing_tokens(&self, end_velocity: bool) -> Vec<Token> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if self.rules.format == NoteFormat::Duration {
            if let Some(Pending::Length(_)) = self.pending {
                let mut beat = self.rules.steps_per_beat.max(1) as u64;
                if self.rules.max_note_steps > 0 {
                    beat = beat.min(self.rules.max_note_steps);
                }
                out.push(Token::Duration(beat as u32));
            }
            out.push(Token::Finish);
            return out;
        }
        let mut open: Vec<(usize, Sound)> = self
            .active
            .iter()
            .filter_map(|&s| self.sounding[s].map(|n| (s, n)))
            .collect();
        open.sort_unstable_by_key(|o| o.0);
        let end = |(i, n): &(usize, Sound)| Token::NoteOff {
            program: (i / 128) as u8,
            velocity: end_velocity.then_some(n.velocity),
            pitch: (i % 128) as u8,
        };
        // Older notes end before the wait, so that none grows past the
        // note-length guard.
        let (fresh, old): (Vec<_>, Vec<_>) = open.iter().partition(|(_, n)| n.start >= self.now);
        out.extend(old.iter().map(|o| end(o)));
        if !fresh.is_empty() {
            out.push(Token::Wait(1));
            out.extend(fresh.iter().map(|o| end(o)));
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
            ["end:i80:v100:64", "wait:1", "end:i80:v100:60", "finish"]
        );
        assert_eq!(
            s.closing_tokens(false)[0].to_string(),
            "end:i80:64",
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
