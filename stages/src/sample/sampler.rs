//! Drawing the next token from masked logits: temperature, top-k, top-p.

use crate::train::rng::Rng;

/// How the next token is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOptions {
    /// Logits are divided by it; 0 = always the most likely token.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches
    /// `top_p` (1 = all).
    pub top_p: f32,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

/// Draws an id among those with `allowed[id]` and a finite logit; `None`
/// when there is none. Ties are broken by the lower id, so the same logits
/// and RNG state give the same id on every machine.
pub fn draw(
    logits: &[f32],
    allowed: &[bool],
    options: &SamplingOptions,
    rng: &mut Rng,
) -> Option<u32> {
    let mut candidates: Vec<(u32, f32)> = logits
        .iter()
        .zip(allowed)
        .enumerate()
        .filter(|(_, (l, ok))| **ok && l.is_finite())
        .map(|(id, (&l, _))| (id as u32, l))
        .collect();
    // Most likely first; equal logits by id.
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let best = candidates.first()?.0;
    if options.temperature <= 0.0 {
        return Some(best);
    }
    if options.top_k > 0 {
        candidates.truncate(options.top_k);
    }
    let top = candidates[0].1;
    let mut weights: Vec<f64> = candidates
        .iter()
        .map(|&(_, l)| (((l - top) / options.temperature) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    if options.top_p < 1.0 {
        let mut cumulative = 0.0;
        let mut keep = weights.len();
        for (i, w) in weights.iter().enumerate() {
            cumulative += w / total;
            if cumulative >= options.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        weights.truncate(keep);
    }
    let total: f64 = weights.iter().sum();
    let target = rng.uniform() as f64 * total;
    let mut cumulative = 0.0;
    for (w, &(id, _)) in weights.iter().zip(&candidates) {
        cumulative += w;
        if target < cumulative {
            return Some(id);
        }
    }
    Some(candidates[weights.len() - 1].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(logits: &[f32], allowed: &[bool], options: SamplingOptions) -> Vec<usize> {
        let mut rng = Rng::new(5);
        let mut counts = vec![0; logits.len()];
        for _ in 0..4000 {
            counts[draw(logits, allowed, &options, &mut rng).unwrap() as usize] += 1;
        }
        counts
    }

    #[test]
    fn masked_tokens_are_never_drawn() {
        let logits = [5.0, 1.0, 1.0, f32::NEG_INFINITY];
        let allowed = [false, true, true, true];
        let counts = frequencies(&logits, &allowed, SamplingOptions::default());
        assert_eq!(counts[0], 0);
        assert_eq!(counts[3], 0);
        assert!(counts[1] > 1800 && counts[2] > 1800, "{counts:?}");
        let none = draw(
            &logits,
            &[false; 4],
            &SamplingOptions::default(),
            &mut Rng::new(1),
        );
        assert_eq!(none, None);
    }

    #[test]
    fn temperature_top_k_and_top_p() {
        let logits = [0.0, 2.0, 1.0, 0.5];
        let all = [true; 4];
        let greedy = SamplingOptions {
            temperature: 0.0,
            ..Default::default()
        };
        assert_eq!(frequencies(&logits, &all, greedy)[1], 4000);
        let top2 = SamplingOptions {
            top_k: 2,
            ..Default::default()
        };
        let c = frequencies(&logits, &all, top2);
        assert_eq!(c[0] + c[3], 0, "{c:?}");
        // p(1) = e^2 / (e^2 + e + e^0.5 + 1) = 0.61: top_p 0.5 keeps it alone.
        let nucleus = SamplingOptions {
            top_p: 0.5,
            ..Default::default()
        };
        assert_eq!(frequencies(&logits, &all, nucleus)[1], 4000);
        // Plain softmax: id 1 drawn about 61% of the time.
        let c = frequencies(&logits, &all, SamplingOptions::default());
        assert!((2300..2600).contains(&c[1]), "{c:?}");
    }
}
