//! Property tests of the grammar mask: on random logits it never lets an
//! invalid token through, and it allows exactly what the independent
//! checker accepts.

use vgmake_stages::midi::tokens::Token;
use vgmake_stages::midi::{NoteFormat, parse_tokens};
use vgmake_stages::sample::check::{LineChecker, check_line};
use vgmake_stages::sample::generate::{
    CANCELLED, GenerateOptions, LogitSource, Stop, generate, generate_until,
};
use vgmake_stages::sample::grammar::{Grammar, SongState};
use vgmake_stages::sample::sampler::SamplingOptions;
use vgmake_stages::train::rng::Rng;

/// A small vocabulary with every kind of token, both end forms, and
/// entries outside the grammar.
fn vocab() -> Vec<String> {
    let mut v: Vec<String> = [
        "<pad>",
        "<unk>",
        "start",
        "finish",
        "wait:1",
        "wait:3",
        "tempo:120",
        "junk",
    ]
    .map(String::from)
    .to_vec();
    for program in [0, 33, 128] {
        for pitch in [60, 62, 64] {
            for velocity in [80, 100] {
                v.push(format!("i{program}:v{velocity}:{pitch}"));
                v.push(format!("end:i{program}:v{velocity}:{pitch}"));
            }
            v.push(format!("end:i{program}:{pitch}"));
        }
    }
    v
}

/// A duration-format vocabulary: lengths up to a bar (16 steps at 4
/// steps per beat) and ties, drums, no end tokens.
fn duration_vocab() -> Vec<String> {
    let mut v: Vec<String> = [
        "<pad>",
        "<unk>",
        "start",
        "finish",
        "wait:1",
        "wait:3",
        "tempo:120",
        "junk",
    ]
    .map(String::from)
    .to_vec();
    for d in [1, 2, 4, 8, 16] {
        v.push(format!("d:{d}"));
    }
    for program in [0, 33, 128] {
        for pitch in [60, 62, 64, 65, 67] {
            v.push(format!("i{program}:v80:{pitch}"));
        }
    }
    v
}

/// Logits from a seeded RNG, with a few -inf and NaN mixed in.
struct RandomLogits {
    rng: Rng,
    size: usize,
}

impl LogitSource for RandomLogits {
    fn reset(&mut self) {}
    fn feed(&mut self, _token: u32) -> candle_core::Result<Vec<f32>> {
        Ok((0..self.size)
            .map(|_| match self.rng.below(50) {
                0 => f32::NEG_INFINITY,
                1 => f32::NAN,
                _ => self.rng.normal() * 4.0,
            })
            .collect())
    }
}

#[test]
fn random_logits_always_give_valid_songs() {
    let vocab = vocab();
    let grammar = Grammar::new(&vocab);
    let mut stops = Vec::new();
    for seed in 0..300u64 {
        let mut source = RandomLogits {
            rng: Rng::new(seed),
            size: vocab.len(),
        };
        let mut rng = Rng::new(seed + 1000);
        let options = GenerateOptions {
            sampling: SamplingOptions {
                temperature: 0.5 + (seed % 4) as f32 * 0.5,
                top_k: (seed % 3) as usize * 5,
                top_p: if seed % 2 == 0 { 1.0 } else { 0.8 },
            },
            max_tokens: 2 + (seed % 60) as usize,
        };
        let song = generate(&mut source, &grammar, &[], &options, &mut rng).unwrap();
        assert_eq!(
            check_line(&song.text, 16),
            Ok(()),
            "seed {seed}: {}",
            song.text
        );
        stops.push(song.stop);
    }
    assert!(stops.contains(&Stop::Finish) && stops.contains(&Stop::MaxTokens));
}

#[test]
fn the_mask_allows_exactly_what_the_checker_accepts() {
    let vocab = vocab();
    let grammar = Grammar::new(&vocab);
    let mut rng = Rng::new(42);
    let mut allowed = Vec::new();
    for _walk in 0..200 {
        let mut state = SongState::new();
        let mut checker = LineChecker::new();
        for _step in 0..40 {
            grammar.mask(&state, false, &mut allowed);
            for (id, text) in vocab.iter().enumerate() {
                let expected =
                    id > 1 && Token::parse(text).is_some_and(|t| checker.clone().push(&t).is_ok());
                assert_eq!(allowed[id], expected, "{text} after {checker:?}");
            }
            let choices: Vec<usize> = (0..vocab.len()).filter(|&i| allowed[i]).collect();
            if choices.is_empty() {
                break;
            }
            let id = choices[rng.below(choices.len() as u64) as usize];
            let token = Token::parse(&vocab[id]).unwrap();
            state.apply(&token);
            checker.push(&token).unwrap();
        }
    }
}

#[test]
fn generation_stops_when_cancelled() {
    // Without `finish` the song can only end at max_tokens, a billion away.
    let vocab: Vec<String> = vocab().into_iter().filter(|t| t != "finish").collect();
    let grammar = Grammar::new(&vocab);
    let mut source = RandomLogits {
        rng: Rng::new(1),
        size: vocab.len(),
    };
    let options = GenerateOptions {
        sampling: SamplingOptions::default(),
        max_tokens: 1_000_000_000,
    };
    let calls = std::cell::Cell::new(0);
    let cancelled = || {
        calls.set(calls.get() + 1);
        calls.get() > 3
    };
    let result = generate_until(
        &mut source,
        &grammar,
        &[],
        &options,
        &mut Rng::new(2),
        &cancelled,
    );
    assert_eq!(result.unwrap_err(), CANCELLED);
    assert_eq!(calls.get(), 4);
}

/// The most notes sounding at once (drums apart) and the longest note.
fn polyphony_and_longest(line: &str) -> (usize, u64) {
    let notes = parse_tokens(line).unwrap().notes;
    let longest = notes.iter().map(|n| n.end - n.start).max().unwrap_or(0);
    let mut events: Vec<(u64, i32)> = notes
        .iter()
        .filter(|n| n.program != 128)
        .flat_map(|n| [(n.start, 1), (n.end, -1)])
        .collect();
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    (most as usize, longest)
}

#[test]
fn guards_hold_in_both_formats_and_are_counted() {
    for (vocab, format) in [
        (vocab(), NoteFormat::OnOff),
        (duration_vocab(), NoteFormat::Duration),
    ] {
        let plain = Grammar::new(&vocab);
        assert_eq!(plain.rules.format, format);
        let guarded = plain.clone().with_guards(4, 10, 2);
        let (mut fired_length, mut fired_polyphony) = (0, 0);
        let (mut most, mut longest) = ((0, 0), (0, 0));
        for seed in 0..200u64 {
            for (g, grammar) in [&plain, &guarded].into_iter().enumerate() {
                let mut source = RandomLogits {
                    rng: Rng::new(seed),
                    size: vocab.len(),
                };
                let options = GenerateOptions {
                    sampling: SamplingOptions::default(),
                    max_tokens: 80,
                };
                let song =
                    generate(&mut source, grammar, &[], &options, &mut Rng::new(seed + 7)).unwrap();
                assert_eq!(
                    check_line(&song.text, 4),
                    Ok(()),
                    "{format:?} {}",
                    song.text
                );
                let (p, l) = polyphony_and_longest(&song.text);
                if g == 1 {
                    assert!(p <= 2, "{format:?} polyphony {p}: {}", song.text);
                    assert!(l <= 10, "{format:?} a note of {l} steps: {}", song.text);
                    fired_length += song.note_length_guard.draws;
                    fired_polyphony += song.polyphony_guard.draws;
                    most.1 = most.1.max(p);
                    longest.1 = longest.1.max(l);
                } else {
                    assert_eq!(song.note_length_guard.draws + song.polyphony_guard.draws, 0);
                    most.0 = most.0.max(p);
                    longest.0 = longest.0.max(l);
                }
            }
        }
        // Without guards the random songs break both limits; with them the
        // guards fired.
        assert!(
            most.0 > 2 && longest.0 > 10,
            "{format:?} {most:?} {longest:?}"
        );
        assert!(fired_length > 0 && fired_polyphony > 0, "{format:?}");
    }
}

#[test]
fn the_duration_mask_allows_exactly_what_the_checker_accepts() {
    let vocab = duration_vocab();
    let grammar = Grammar::new(&vocab).with_guards(4, 0, 0);
    let mut rng = Rng::new(43);
    let mut allowed = Vec::new();
    for _walk in 0..200 {
        let mut state = grammar.state();
        let mut checker = LineChecker::with_format(NoteFormat::Duration, 4);
        for _step in 0..40 {
            grammar.mask(&state, false, &mut allowed);
            for (id, text) in vocab.iter().enumerate() {
                let expected =
                    id > 1 && Token::parse(text).is_some_and(|t| checker.clone().push(&t).is_ok());
                assert_eq!(allowed[id], expected, "{text} after {checker:?}");
            }
            let choices: Vec<usize> = (0..vocab.len()).filter(|&i| allowed[i]).collect();
            if choices.is_empty() {
                break;
            }
            let id = choices[rng.below(choices.len() as u64) as usize];
            let token = Token::parse(&vocab[id]).unwrap();
            state.apply(&token);
            checker.push(&token).unwrap();
        }
    }
}
