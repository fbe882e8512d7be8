//! The token grammar, in one place: text token <-> [`Token`].
//!
//! ```text
//! start tempo:150 i80:v100:64 i33:v90:40 wait:8 end:i80:v100:64 ... finish
//! ```
//!
//! Limit, vocab, decode and the sampler's grammar mask all parse tokens here.

use std::fmt;

/// One token of a song line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    Start,
    Finish,
    /// Tempo in beats per minute, from the song's start or a change.
    Tempo(u32),
    /// Advance this many grid steps (>= 1).
    Wait(u32),
    /// A note starts: program 0-127 (128 = drums), velocity 1-127, pitch 0-127.
    NoteOn {
        program: u8,
        velocity: u8,
        pitch: u8,
    },
    /// A note ends; `velocity` is the start's velocity, or `None` when the
    /// song was encoded with `note_off_velocity = false`.
    NoteOff {
        program: u8,
        velocity: Option<u8>,
        pitch: u8,
    },
}

impl Token {
    /// Parses one token; `None` when it is not in the grammar.
    pub fn parse(text: &str) -> Option<Token> {
        match text {
            "start" => return Some(Token::Start),
            "finish" => return Some(Token::Finish),
            _ => {}
        }
        if let Some(n) = text.strip_prefix("wait:") {
            return number(n, 1, u32::MAX as u64).map(|n| Token::Wait(n as u32));
        }
        if let Some(n) = text.strip_prefix("tempo:") {
            return number(n, 1, u32::MAX as u64).map(|n| Token::Tempo(n as u32));
        }
        if let Some(rest) = text.strip_prefix("end:") {
            let (program, velocity, pitch) = note_fields(rest, true)?;
            return Some(Token::NoteOff {
                program,
                velocity,
                pitch,
            });
        }
        let (program, velocity, pitch) = note_fields(text, false)?;
        Some(Token::NoteOn {
            program,
            velocity: velocity?,
            pitch,
        })
    }

    /// The number of grid steps this token advances time by.
    pub fn wait_steps(&self) -> u32 {
        match self {
            Token::Wait(n) => *n,
            _ => 0,
        }
    }
}

/// `i{program}:v{velocity}:{pitch}`, or `i{program}:{pitch}` when
/// `velocity_optional`.
fn note_fields(text: &str, velocity_optional: bool) -> Option<(u8, Option<u8>, u8)> {
    let rest = text.strip_prefix('i')?;
    let mut parts = rest.split(':');
    let program = number(parts.next()?, 0, 128)? as u8;
    let second = parts.next()?;
    let (velocity, pitch) = match second.strip_prefix('v') {
        Some(v) => (Some(number(v, 1, 127)? as u8), parts.next()?),
        None if velocity_optional => (None, second),
        None => return None,
    };
    let pitch = number(pitch, 0, 127)? as u8;
    if parts.next().is_some() {
        return None;
    }
    Some((program, velocity, pitch))
}

/// A plain decimal number within `min..=max` (no sign, no leading zeros).
fn number(text: &str, min: u64, max: u64) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    let mut n = 0u64;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    (min..=max).contains(&n).then_some(n)
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

impl Token {
    /// Appends the token's text to `out` (fast path of the encoder: no
    /// formatting machinery).
    pub fn write_to(&self, out: &mut String) {
        match *self {
            Token::Start => out.push_str("start"),
            Token::Finish => out.push_str("finish"),
            Token::Tempo(bpm) => {
                out.push_str("tempo:");
                push_number(out, bpm as u64);
            }
            Token::Wait(n) => {
                out.push_str("wait:");
                push_number(out, n as u64);
            }
            Token::NoteOn {
                program,
                velocity,
                pitch,
            } => push_note(out, program, Some(velocity), pitch),
            Token::NoteOff {
                program,
                velocity,
                pitch,
            } => {
                out.push_str("end:");
                push_note(out, program, velocity, pitch);
            }
        }
    }
}

fn push_note(out: &mut String, program: u8, velocity: Option<u8>, pitch: u8) {
    out.push('i');
    push_number(out, program as u64);
    out.push(':');
    if let Some(v) = velocity {
        out.push('v');
        push_number(out, v as u64);
        out.push(':');
    }
    push_number(out, pitch as u64);
}

fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// Counts the tokens of a line and finds its longest wait, without parsing
/// notes (the limit stage's hot loop).
pub fn scan_line(line: &str) -> (usize, u64) {
    let mut events = 0;
    let mut longest_wait = 0u64;
    for token in line.split_ascii_whitespace() {
        events += 1;
        if let Some(n) = token.strip_prefix("wait:") {
            longest_wait = longest_wait.max(n.parse().unwrap_or(0));
        }
    }
    (events, longest_wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_round_trips_through_text() {
        let tokens = [
            Token::Start,
            Token::Finish,
            Token::Tempo(150),
            Token::Wait(8),
            Token::NoteOn {
                program: 128,
                velocity: 100,
                pitch: 36,
            },
            Token::NoteOff {
                program: 0,
                velocity: Some(1),
                pitch: 127,
            },
            Token::NoteOff {
                program: 80,
                velocity: None,
                pitch: 64,
            },
        ];
        for token in tokens {
            let text = token.to_string();
            assert_eq!(Token::parse(&text), Some(token), "{text}");
        }
        assert_eq!(Token::Wait(8).to_string(), "wait:8");
        assert_eq!(
            Token::NoteOff {
                program: 80,
                velocity: None,
                pitch: 64
            }
            .to_string(),
            "end:i80:64"
        );
    }

    #[test]
    fn rejects_what_is_not_in_the_grammar() {
        for bad in [
            "",
            "wait:0",
            "wait:",
            "wait:-1",
            "tempo:0",
            "i129:v10:60",
            "i1:v0:60",
            "i1:v10:128",
            "i1:60",
            "i1:v10:60:1",
            "end:i1",
            "x",
            "wait:08",
            "i1:v10:6a",
            "START",
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn scan_counts_tokens_and_longest_wait() {
        assert_eq!(
            scan_line("start tempo:120 i1:v10:60 wait:16 wait:3 end:i1:v10:60 finish"),
            (7, 16)
        );
    }
}
