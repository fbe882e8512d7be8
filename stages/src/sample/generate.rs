//! Writing one song with the model: feed the prompt, then draw token after
//! token under the grammar mask until `finish` or `max_tokens`, and close
//! whatever is still sounding.

use candle_core::{Device, Tensor};

use super::grammar::{Grammar, Guards};
use super::sampler::{SamplingOptions, draw};
use crate::midi::tokens::Token;
use crate::train::rng::Rng;
use crate::train::{Gpt, KvCache};

/// Something that gives next-token logits, one fed token at a time.
pub trait LogitSource {
    /// Forgets every token fed so far.
    fn reset(&mut self);
    /// Feeds `token` and returns the logits of the token after it.
    fn feed(&mut self, token: u32) -> candle_core::Result<Vec<f32>>;
}

/// Incremental decoding with the model's KV cache (what the stage uses).
pub struct Cached<'a> {
    pub model: &'a Gpt,
    cache: KvCache,
}

impl<'a> Cached<'a> {
    pub fn new(model: &'a Gpt) -> Self {
        Cached {
            model,
            cache: KvCache::new(),
        }
    }
}

impl LogitSource for Cached<'_> {
    fn reset(&mut self) {
        self.cache = KvCache::new();
    }
    fn feed(&mut self, token: u32) -> candle_core::Result<Vec<f32>> {
        self.model.forward_step(token, &mut self.cache)
    }
}

/// No cache: the full forward pass over the last `context` tokens at every
/// step (the baseline the cache is measured against).
pub struct Recompute<'a> {
    pub model: &'a Gpt,
    history: Vec<u32>,
}

impl<'a> Recompute<'a> {
    pub fn new(model: &'a Gpt) -> Self {
        Recompute {
            model,
            history: Vec::new(),
        }
    }
}

impl LogitSource for Recompute<'_> {
    fn reset(&mut self) {
        self.history.clear();
    }
    fn feed(&mut self, token: u32) -> candle_core::Result<Vec<f32>> {
        self.history.push(token);
        let context = self.model.config.context;
        let window = &self.history[self.history.len().saturating_sub(context)..];
        let ids = Tensor::new(window, &Device::Cpu)?
            .to_device(self.model.device())?
            .unsqueeze(0)?;
        let logits = self.model.forward(&ids)?.squeeze(0)?;
        logits.get(window.len() - 1)?.to_vec1()
    }
}

/// The error of a cancelled [`generate_until`].
pub const CANCELLED: &str = "cancelled";

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The model drew `finish`.
    Finish,
    /// The line reached `max_tokens`.
    MaxTokens,
    /// The mask left no token with a finite logit.
    NoValidToken,
}

/// One generated song.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The token line, closing tokens included.
    pub text: String,
    /// Tokens of the line.
    pub tokens: usize,
    /// Tokens the model drew (not the prompt, not the closing tokens).
    pub drawn: usize,
    /// Tokens appended to close open notes (and `finish`).
    pub closed: usize,
    pub stop: Stop,
    /// How often the note-length guard changed what could be drawn.
    pub note_length_guard: GuardCount,
    /// How often the polyphony guard changed what could be drawn.
    pub polyphony_guard: GuardCount,
}

/// How often a guard fired while one song was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct GuardCount {
    /// Draws where the guard masked a token the grammar alone allows.
    pub draws: usize,
    /// The model's probability (after temperature, over the grammar's
    /// tokens) that the guard masked, summed over draws: the expected
    /// number of tokens it changed.
    pub blocked_probability: f64,
}

impl GuardCount {
    pub fn add(&mut self, other: &GuardCount) {
        self.draws += other.draws;
        self.blocked_probability += other.blocked_probability;
    }
}

/// Adds to `count` the probability of the tokens `grammar` allows and
/// `guarded` does not.
fn count_guard(
    count: &mut GuardCount,
    logits: &[f32],
    grammar: &[bool],
    guarded: &[bool],
    temperature: f32,
) {
    if grammar == guarded {
        return;
    }
    let finite = |i: usize| grammar[i] && logits[i].is_finite();
    let top = (0..logits.len())
        .filter(|&i| finite(i))
        .map(|i| logits[i])
        .fold(f32::NEG_INFINITY, f32::max);
    if !top.is_finite() {
        return;
    }
    let t = temperature.max(1e-3) as f64;
    let (mut total, mut blocked) = (0.0, 0.0);
    for i in (0..logits.len()).filter(|&i| finite(i)) {
        let w = ((logits[i] - top) as f64 / t).exp();
        total += w;
        if !guarded[i] {
            blocked += w;
        }
    }
    count.draws += 1;
    count.blocked_probability += blocked / total;
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub sampling: SamplingOptions,
    /// The line stops growing at this many tokens (prompt included); the
    /// closing tokens come after.
    pub max_tokens: usize,
}

/// Generates one song from `prompt` (ids; tokens the grammar does not
/// accept at their place, such as `<unk>`, are skipped, and a leading
/// `start` is added when missing).
pub fn generate(
    source: &mut dyn LogitSource,
    grammar: &Grammar,
    prompt: &[u32],
    options: &GenerateOptions,
    rng: &mut Rng,
) -> Result<Generated, String> {
    generate_until(source, grammar, prompt, options, rng, &|| false)
}

/// Checks `cancelled` this often (in tokens).
const CANCEL_EVERY: usize = 32;

/// [`generate`], giving up with `Err(CANCELLED)` once `cancelled()` is true.
pub fn generate_until(
    source: &mut dyn LogitSource,
    grammar: &Grammar,
    prompt: &[u32],
    options: &GenerateOptions,
    rng: &mut Rng,
    cancelled: &dyn Fn() -> bool,
) -> Result<Generated, String> {
    let start_id = grammar
        .id_of(&Token::Start)
        .ok_or("the vocabulary has no `start` token")?;
    let model_err = |e: candle_core::Error| format!("running the model: {e}");
    source.reset();
    let mut state = grammar.state();
    let mut line: Vec<Token> = Vec::new();
    let mut logits = Vec::new();
    let prompt = std::iter::once(start_id).chain(prompt.iter().copied());
    for id in prompt {
        let Some(token) = grammar.tokens.get(id as usize).copied().flatten() else {
            continue;
        };
        if token == Token::Finish || !state.allows(&token) {
            continue;
        }
        if line.len() >= options.max_tokens.max(1) {
            break;
        }
        state.apply(&token);
        line.push(token);
        logits = source.feed(id).map_err(model_err)?;
    }
    let mut allowed = Vec::with_capacity(grammar.tokens.len());
    let (mut plain, mut one_guard) = (Vec::new(), Vec::new());
    let mut note_length_guard = GuardCount::default();
    let mut polyphony_guard = GuardCount::default();
    let guarded = grammar.rules.max_note_steps > 0 || grammar.rules.max_polyphony > 0;
    let mut drawn = 0;
    let stop = loop {
        if line.len() >= options.max_tokens {
            break Stop::MaxTokens;
        }
        if drawn % CANCEL_EVERY == 0 && cancelled() {
            return Err(CANCELLED.into());
        }
        let last = line.len() + 1 >= options.max_tokens;
        grammar.mask(&state, last, &mut allowed);
        if guarded && !logits.is_empty() {
            let t = options.sampling.temperature;
            grammar.mask_with(&state, last, Guards::NONE, &mut plain);
            if plain != allowed {
                for (only, count) in [
                    (
                        Guards {
                            note_length: true,
                            polyphony: false,
                        },
                        &mut note_length_guard,
                    ),
                    (
                        Guards {
                            note_length: false,
                            polyphony: true,
                        },
                        &mut polyphony_guard,
                    ),
                ] {
                    grammar.mask_with(&state, last, only, &mut one_guard);
                    count_guard(count, &logits, &plain, &one_guard, t);
                }
            }
        }
        let Some(id) = draw(&logits, &allowed, &options.sampling, rng) else {
            break Stop::NoValidToken;
        };
        let token = grammar.tokens[id as usize].expect("the mask allows parsed tokens only");
        drawn += 1;
        if token == Token::Finish {
            // The closing tokens end open notes before `finish`.
            break Stop::Finish;
        }
        state.apply(&token);
        line.push(token);
        logits = source.feed(id).map_err(model_err)?;
    };
    let closing = state.closing_tokens(grammar.end_velocity);
    let closed = closing.len();
    line.extend(closing);
    let mut text = Vec::new();
    for (i, token) in line.iter().enumerate() {
        if i > 0 {
            text.push(b' ');
        }
        token.write_to(&mut text);
    }
    Ok(Generated {
        text: String::from_utf8(text).expect("tokens are ASCII"),
        tokens: line.len(),
        drawn,
        closed,
        stop,
        note_length_guard,
        polyphony_guard,
    })
}
