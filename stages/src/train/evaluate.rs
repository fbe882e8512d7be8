//! Scores the model on the validation split: every id after the first is a
//! target once, predicted from up to `context` ids before it.

use candle_core::{Result, Tensor};

use super::batches::eval_windows;
use super::model::Gpt;
use super::score::Score;

/// Scores `ids` (at most `max_targets` targets when nonzero: the periodic
/// evaluation during training uses a fixed prefix to stay quick).
pub fn evaluate(
    model: &Gpt,
    ids: &[u32],
    is_note: &[bool],
    batch: usize,
    max_targets: usize,
) -> Result<Score> {
    let t = model.config.context;
    let ids = if max_targets > 0 && ids.len() > max_targets + 1 {
        &ids[..max_targets + 1]
    } else {
        ids
    };
    let windows = eval_windows(ids, t);
    let mut score = Score::default();
    // Full windows in batches; the shorter last one on its own.
    let (full, last): (Vec<_>, Vec<_>) = windows.into_iter().partition(|(i, _)| i.len() == t);
    for group in full.chunks(batch.max(1)).chain(last.chunks(1)) {
        let len = group[0].0.len();
        let inputs: Vec<u32> = group.iter().flat_map(|(i, _)| i.iter().copied()).collect();
        let inputs = Tensor::from_vec(inputs, (group.len(), len), model.device())?;
        let logits: Vec<f32> = model
            .forward_flat(&inputs, None)?
            .flatten_all()?
            .to_vec1()?;
        let v = model.config.vocab_size;
        let targets = group.iter().flat_map(|(_, t)| t.iter().copied());
        for (row, target) in logits.chunks_exact(v).zip(targets) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            let x = row[target as usize];
            let rank = row
                .iter()
                .enumerate()
                .filter(|&(id, &y)| y > x || (y == x && id < target as usize))
                .count();
            score.add(lse - x as f64, rank, is_note[target as usize]);
        }
    }
    Ok(score)
}
