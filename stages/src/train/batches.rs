//! Training batches: random context windows from the training ids, drawn
//! with the run's seeded RNG. Windows may cross song boundaries, which
//! teaches the model that `finish` is followed by `start`.

use candle_core::{Device, Result, Tensor};

use super::rng::Rng;

/// Inputs `(batch, t)` and next-token targets `(batch * t,)`, both u32.
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
}

/// Draws `batch` windows of `t + 1` ids (needs `ids.len() > t`).
pub fn random_batch(
    ids: &[u32],
    batch: usize,
    t: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<Batch> {
    let starts = ids.len() - t; // windows start in 0..=len - t - 1
    let mut inputs = Vec::with_capacity(batch * t);
    let mut targets = Vec::with_capacity(batch * t);
    for _ in 0..batch {
        let s = rng.below(starts as u64) as usize;
        inputs.extend_from_slice(&ids[s..s + t]);
        targets.extend_from_slice(&ids[s + 1..s + t + 1]);
    }
    Ok(Batch {
        inputs: Tensor::from_vec(inputs, (batch, t), device)?,
        targets: Tensor::from_vec(targets, batch * t, device)?,
    })
}

/// Evaluation windows covering `ids` so that every id after the first is a
/// target exactly once: window k is `ids[k t .. k t + t + 1]` (the last one
/// shorter). Returns (inputs, targets) id pairs.
pub fn eval_windows(ids: &[u32], t: usize) -> Vec<(&[u32], &[u32])> {
    let mut windows = Vec::new();
    let mut s = 0;
    while s + 1 < ids.len() {
        let end = (s + t).min(ids.len() - 1);
        windows.push((&ids[s..end], &ids[s + 1..end + 1]));
        s = end;
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_inputs_shifted_by_one() {
        let ids: Vec<u32> = (0..50).collect();
        let mut rng = Rng::new(1);
        let b = random_batch(&ids, 4, 8, &mut rng, &Device::Cpu).unwrap();
        let x: Vec<Vec<u32>> = b.inputs.to_vec2().unwrap();
        let y: Vec<u32> = b.targets.to_vec1().unwrap();
        for (row, xs) in x.iter().enumerate() {
            for (i, &v) in xs.iter().enumerate() {
                assert_eq!(y[row * 8 + i], v + 1);
            }
        }
        // The same seed draws the same batch.
        let again = random_batch(&ids, 4, 8, &mut Rng::new(1), &Device::Cpu).unwrap();
        assert_eq!(again.inputs.to_vec2::<u32>().unwrap(), x);
    }

    #[test]
    fn the_last_window_can_start_at_the_last_position() {
        let ids: Vec<u32> = (0..10).collect();
        let mut rng = Rng::new(2);
        let mut seen_last = false;
        for _ in 0..500 {
            let b = random_batch(&ids, 1, 9, &mut rng, &Device::Cpu).unwrap();
            seen_last |= b.targets.to_vec1::<u32>().unwrap()[8] == 9;
        }
        assert!(seen_last);
    }

    #[test]
    fn eval_windows_score_every_target_once() {
        let ids: Vec<u32> = (0..23).collect();
        let w = eval_windows(&ids, 5);
        let targets: Vec<u32> = w.iter().flat_map(|(_, t)| t.iter().copied()).collect();
        assert_eq!(targets, (1..23).collect::<Vec<_>>());
        assert!(w.iter().all(|(i, t)| i.len() == t.len() && i.len() <= 5));
        assert!(eval_windows(&[4], 5).is_empty());
    }
}
