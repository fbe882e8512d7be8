//! The token grammar, in one place: text token <-> [`Token`].
//!
//! ```text
//! start tempo:150 i80:v100:64 i33:v90:40 wait:8 end:i80:v100:64 ... finish
//! start tempo:150 i80:v100:64 d:8 i33:v90:40 d:16 wait:8 ... finish   (note_format = "duration")
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
    /// The length of the note that starts just before, in grid steps (>= 1;
    /// `note_format = "duration"`). Several in a row add up: a long note is
    /// tied from whole bars.
    Duration(u32),
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
        if let Some(n) = text.strip_prefix("d:") {
            return number(n, 1, u32::MAX as u64).map(|n| Token::Duration(n as u32));
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

    /// The token as one number (the encode stage's compact form, in its
    /// memo and while it builds the song set): the kind in the top byte,
    /// the fields below. [`Token::from_code`] reverses it.
    #[inline]
    pub fn code(&self) -> u64 {
        match *self {
            Token::Start => 0,
            Token::Finish => 1 << 56,
            Token::Tempo(n) => 2 << 56 | n as u64,
            Token::Wait(n) => 3 << 56 | n as u64,
            Token::Duration(n) => 4 << 56 | n as u64,
            Token::NoteOn {
                program,
                velocity,
                pitch,
            } => 5 << 56 | (program as u64) << 16 | (velocity as u64) << 8 | pitch as u64,
            Token::NoteOff {
                program,
                velocity,
                pitch,
            } => {
                let v = velocity.map_or(0, |v| 1 << 24 | (v as u64) << 8);
                6 << 56 | (program as u64) << 16 | v | pitch as u64
            }
        }
    }

    /// The token of a [`Token::code`]; `None` for a number that is not one.
    pub fn from_code(code: u64) -> Option<Token> {
        let low = code as u32;
        let (program, velocity, pitch) = ((code >> 16) as u8, (code >> 8) as u8, code as u8);
        let token = match code >> 56 {
            0 => Token::Start,
            1 => Token::Finish,
            2 => Token::Tempo(low),
            3 => Token::Wait(low),
            4 => Token::Duration(low),
            5 => Token::NoteOn {
                program,
                velocity,
                pitch,
            },
            6 => Token::NoteOff {
                program,
                velocity: (code >> 24 & 1 == 1).then_some(velocity),
                pitch,
            },
            _ => return None,
        };
        (token.code() == code).then_some(token)
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
        let mut bytes = Vec::new();
        self.write_to(&mut bytes);
        f.write_str(&String::from_utf8_lossy(&bytes))
    }
}

impl Token {
    /// Appends the token's ASCII text to `out` (the encoder's hot path: the
    /// bytes go straight into `out`'s buffer, which is then cut back to the
    /// token's length; building it elsewhere and copying it cost a stalled
    /// load per token).
    #[inline]
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + TOKEN_MAX, 0);
        let mut buf = TokenBuf {
            bytes: (&mut out[start..]).try_into().unwrap(),
            len: 0,
        };
        match *self {
            Token::Start => buf.push_str(b"start"),
            Token::Finish => buf.push_str(b"finish"),
            Token::Tempo(bpm) => {
                buf.push_str(b"tempo:");
                buf.push_number(bpm);
            }
            Token::Wait(n) => {
                buf.push_str(b"wait:");
                buf.push_number(n);
            }
            Token::Duration(n) => {
                buf.push_str(b"d:");
                buf.push_number(n);
            }
            Token::NoteOn {
                program,
                velocity,
                pitch,
            } => buf.push_note(program, Some(velocity), pitch),
            Token::NoteOff {
                program,
                velocity,
                pitch,
            } => {
                buf.push_str(b"end:");
                buf.push_note(program, velocity, pitch);
            }
        }
        let len = buf.len;
        out.truncate(start + len);
    }
}

/// The longest token: `end:i128:v127:127` or `wait:4294967295`.
const TOKEN_MAX: usize = 24;

/// A token's bytes, written in place.
struct TokenBuf<'a> {
    bytes: &'a mut [u8; TOKEN_MAX],
    len: usize,
}

/// The decimal text of 0-255, padded to 4 bytes, and its length.
const SMALL: [([u8; 4], usize); 256] = {
    let mut table = [([0u8; 4], 0usize); 256];
    let mut n = 0;
    while n < 256 {
        let (h, t, o) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        table[n] = if n >= 100 {
            ([b'0' + h, b'0' + t, b'0' + o, 0], 3)
        } else if n >= 10 {
            ([b'0' + t, b'0' + o, 0, 0], 2)
        } else {
            ([b'0' + o, 0, 0, 0], 1)
        };
        n += 1;
    }
    table
};

impl TokenBuf<'_> {
    #[inline(always)]
    fn push(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    #[inline(always)]
    fn push_str(&mut self, s: &[u8]) {
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    #[inline(always)]
    fn push_number(&mut self, n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push_str(&digits[i..]);
    }

    /// Writes 4 bytes (the room is there: no token gets within 4 bytes of
    /// the end with a small number still to write) and keeps the digits.
    #[inline(always)]
    fn push_small(&mut self, n: u8) {
        let (digits, len) = SMALL[n as usize];
        self.bytes[self.len..self.len + 4].copy_from_slice(&digits);
        self.len += len;
    }

    #[inline(always)]
    fn push_note(&mut self, program: u8, velocity: Option<u8>, pitch: u8) {
        self.push(b'i');
        self.push_small(program);
        self.push(b':');
        if let Some(v) = velocity {
            self.push(b'v');
            self.push_small(v);
            self.push(b':');
        }
        self.push_small(pitch);
    }
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
            Token::Duration(64),
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
            assert_eq!(Token::from_code(token.code()), Some(token), "{text}");
        }
        assert_eq!(Token::from_code(7 << 56), None);
        assert_eq!(Token::from_code(1 << 56 | 5), None);
        assert_eq!(Token::Wait(8).to_string(), "wait:8");
        assert_eq!(Token::Duration(3).to_string(), "d:3");
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
            "d:0",
            "d:",
            "d:01",
            "i1:v10:6a",
            "START",
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }
}
