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

/// A number that orders tokens exactly as their names order byte by byte
/// (the song set's table is sorted by name: one radix sort of these keys
/// sorts it without the names). `None` for a code that is no token.
///
/// Each kind's name has a fixed prefix whose first letter is its own (`d:`,
/// `end:i`, `finish`, `i`, `start`, `tempo:`, `wait:`): its rank among
/// those letters goes above bit 48. Below, what follows the prefix as 12
/// characters of 4 bits, first at the top, each ranked as its byte is
/// ('0'-'9' 1-10, ':' 11, 'v' 12) and 0 past the end, so that a name sorts
/// before its extensions. A note's fields sit at fixed places (the program
/// and its ':' in 4 characters, 'v', the velocity and its ':' in 5, the
/// pitch in 3): two notes' texts first differ inside the first field that
/// differs, since no field's text is a prefix of another's ending with its
/// ':', so the fields after it never decide.
pub fn name_key(code: u64) -> Option<u64> {
    let (rank, rest) = match Token::from_code(code)? {
        Token::Duration(n) => (1, number_chars(n)),
        Token::NoteOff {
            program,
            velocity: Some(velocity),
            pitch,
        } => (2, note_chars(program, velocity, pitch)),
        // The pitch's first digit where the others have their 'v'.
        Token::NoteOff {
            program,
            velocity: None,
            pitch,
        } => (
            2,
            FIELD_THEN_COLON[program as usize] << 32 | FIELD[pitch as usize] << 20,
        ),
        Token::Finish => (3, 0),
        Token::NoteOn {
            program,
            velocity,
            pitch,
        } => (4, note_chars(program, velocity, pitch)),
        Token::Start => (5, 0),
        Token::Tempo(n) => (6, number_chars(n)),
        Token::Wait(n) => (7, number_chars(n)),
    };
    Some(rank << 48 | rest)
}

/// The rank of ':' and 'v' among a name's characters after its prefix.
const COLON_CHAR: u64 = 11;
const V_CHAR: u64 = 12;

/// 0-255 in decimal as 3 characters of [`name_key`] (12 bits, padded with 0).
const FIELD: [u64; 256] = field_table(false);
/// The same followed by ':', as 4 characters (16 bits).
const FIELD_THEN_COLON: [u64; 256] = field_table(true);

const fn field_table(colon: bool) -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut n = 0;
    while n < 256 {
        let (digits, len) = SMALL[n];
        let mut chars = 0u64;
        let mut i = 0;
        while i < 4 {
            let char = if i < len {
                (digits[i] - b'0') as u64 + 1
            } else if colon && i == len {
                COLON_CHAR
            } else {
                0
            };
            chars = chars << 4 | char;
            i += 1;
        }
        table[n] = if colon { chars } else { chars >> 4 };
        n += 1;
    }
    table
}

/// `i{program}:v{velocity}:{pitch}` after its prefix, as [`name_key`]'s 12
/// characters.
fn note_chars(program: u8, velocity: u8, pitch: u8) -> u64 {
    FIELD_THEN_COLON[program as usize] << 32
        | V_CHAR << 28
        | FIELD_THEN_COLON[velocity as usize] << 12
        | FIELD[pitch as usize]
}

/// A number's decimal digits as [`name_key`]'s first 10 characters.
fn number_chars(n: u32) -> u64 {
    let digits = n.checked_ilog10().unwrap_or(0) + 1;
    let mut chars = 0u64;
    let mut rest = n;
    for i in 0..digits {
        let char = (rest % 10) as u64 + 1;
        rest /= 10;
        // The last digit is character `digits - 1`, at the top's 4 bits down.
        chars |= char << (44 - 4 * (digits - 1 - i));
    }
    chars
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

    /// Keys sort as names do, and tie only where names do, over every
    /// kind: fields at their edges (one, two and three digits; 0, 9, 10,
    /// 99, 100, 255), numbers of 1 to 10 digits, both forms of note ends.
    #[test]
    fn name_keys_order_tokens_as_their_names() {
        let small = [0u8, 1, 5, 9, 10, 13, 50, 99, 100, 101, 128, 200, 255];
        let numbers = [0u32, 1, 7, 9, 10, 11, 70, 99, 100, 1_000, 65_536, u32::MAX];
        let mut tokens = vec![Token::Start, Token::Finish];
        for &n in &numbers {
            tokens.extend([Token::Tempo(n), Token::Wait(n), Token::Duration(n)]);
        }
        for &program in &small {
            for &velocity in &small {
                for &pitch in &small {
                    tokens.push(Token::NoteOn {
                        program,
                        velocity,
                        pitch,
                    });
                    tokens.push(Token::NoteOff {
                        program,
                        velocity: Some(velocity),
                        pitch,
                    });
                }
                tokens.push(Token::NoteOff {
                    program,
                    velocity: None,
                    pitch: velocity,
                });
            }
        }
        let keyed: Vec<(u64, String)> = tokens
            .iter()
            .map(|t| (name_key(t.code()).unwrap(), t.to_string()))
            .collect();
        let mut by_key = keyed.clone();
        by_key.sort();
        let mut by_name = keyed;
        by_name.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(by_key, by_name);
        by_key.dedup_by_key(|k| k.0);
        assert_eq!(by_key.len(), by_name.len(), "two names share a key");
        // Keyed exactly where a code is a token, stray bits included.
        let mut state = 3u64;
        for _ in 0..100_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let kind = (state >> 61) << 56;
            let bits = state >> (state % 64) & ((1 << 56) - 1);
            for code in [
                kind | bits,
                kind | bits & 0xFF_FFFF,
                kind | bits & 0x10F_FF7F,
            ] {
                assert_eq!(
                    name_key(code).is_some(),
                    Token::from_code(code).is_some(),
                    "{code:#x}"
                );
            }
        }
        assert_eq!(name_key(7 << 56), None);
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
