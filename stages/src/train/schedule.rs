//! The learning-rate schedule: linear warm-up to `lr`, then cosine decay to
//! `lr * MIN_FACTOR` at the last step.

/// Where the cosine ends, relative to the peak (as in GPT-3 / nanoGPT).
pub const MIN_FACTOR: f64 = 0.1;

/// The learning rate for 0-based `step` of a run of `steps` steps.
pub fn learning_rate(step: usize, steps: usize, warmup: usize, lr: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = steps.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    lr * (MIN_FACTOR + (1.0 - MIN_FACTOR) * cosine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let lr = 1e-3;
        assert!((learning_rate(0, 100, 10, lr) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(9, 100, 10, lr) - lr).abs() < 1e-12);
        assert!((learning_rate(10, 100, 10, lr) - lr).abs() < 1e-12);
        let mid = learning_rate(55, 100, 10, lr);
        assert!((mid - lr * (MIN_FACTOR + (1.0 - MIN_FACTOR) * 0.5)).abs() < 1e-12);
        assert!(learning_rate(99, 100, 10, lr) > lr * MIN_FACTOR);
        assert!((learning_rate(100, 100, 10, lr) - lr * MIN_FACTOR).abs() < 1e-12);
        let falling = (10..100).map(|s| learning_rate(s, 100, 10, lr));
        assert!(falling.clone().zip(falling.skip(1)).all(|(a, b)| b <= a));
        assert!(
            learning_rate(0, 5, 0, lr) == lr,
            "no warm-up starts at the peak"
        );
    }
}
