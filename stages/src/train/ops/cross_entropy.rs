//! Mean cross-entropy of logits `(n, v)` against target ids `(n,)`, with a
//! fused log-softmax; the backward pass writes `(softmax - onehot) / n`
//! directly, never materialising the log-probabilities.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{f32_slice, rows_per_task, vector};
use crate::train::fastmath;

/// The mean negative log-likelihood (nats) of `targets` (u32) under `logits`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, CrossEntropy)
}

/// The backward op on its own: `grad_scale * (softmax(logits) - onehot)/n`.
pub fn cross_entropy_bwd_op(logits: &Tensor, targets: &Tensor, grad_scale: f32) -> Result<Tensor> {
    logits.apply_op2_no_bwd(targets, &CrossEntropyBackward { grad_scale })
}

struct CrossEntropy;

fn check<'a>(
    ls: &'a CpuStorage,
    ll: &Layout,
    ts: &'a CpuStorage,
    tl: &Layout,
) -> Result<(&'a [f32], &'a [u32], usize)> {
    let logits = f32_slice(ls, ll, "cross_entropy")?;
    let (n, v) = match ll.dims() {
        [n, v] => (*n, *v),
        dims => bail!("cross_entropy: expected (n, vocab) logits, got {dims:?}"),
    };
    let targets = match tl.contiguous_offsets() {
        Some((a, b)) => &ts.as_slice::<u32>()?[a..b],
        None => bail!("cross_entropy: targets must be contiguous"),
    };
    if targets.len() != n {
        bail!(
            "cross_entropy: {n} rows of logits but {} targets",
            targets.len()
        );
    }
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= v) {
        bail!("cross_entropy: target id {bad} outside the vocabulary of {v}");
    }
    Ok((logits, targets, v))
}

/// (max, log(sum(exp(row)))) computed stably.
#[inline]
pub(super) fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = vector::max(row);
    (max, max + vector::sum_exp(row, max).ln())
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (logits, targets, v) = check(ls, ll, ts, tl)?;
        let n = targets.len();
        let rows = rows_per_task(n, v);
        // Per-chunk sums in f64, added in order: deterministic on any thread count.
        let partial: Vec<f64> = logits
            .par_chunks(rows * v)
            .zip(targets.par_chunks(rows))
            .map(|(lc, tc)| {
                lc.chunks_exact(v)
                    .zip(tc)
                    .map(|(row, &t)| (log_sum_exp(row).1 - row[t as usize]) as f64)
                    .sum::<f64>()
            })
            .collect();
        let mean = partial.iter().sum::<f64>() / n.max(1) as f64;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_scale = grad.to_scalar::<f32>()?;
        let dl = cross_entropy_bwd_op(logits, targets, grad_scale)?;
        Ok((Some(dl), None))
    }
}

struct CrossEntropyBackward {
    grad_scale: f32,
}

impl CustomOp2 for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross-entropy-backward"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (logits, targets, v) = check(ls, ll, ts, tl)?;
        let n = targets.len();
        let scale = self.grad_scale / n.max(1) as f32;
        let mut d = vec![0f32; logits.len()];
        let rows = rows_per_task(n, v);
        d.par_chunks_mut(rows * v)
            .zip(logits.par_chunks(rows * v).zip(targets.par_chunks(rows)))
            .for_each(|(dc, (lc, tc))| {
                for ((dr, row), &t) in dc.chunks_exact_mut(v).zip(lc.chunks_exact(v)).zip(tc) {
                    let (max, lse) = log_sum_exp(row);
                    let inv = fastmath::exp(max - lse);
                    for (d, &x) in dr.iter_mut().zip(row) {
                        *d = scale * fastmath::exp(x - max) * inv;
                    }
                    dr[t as usize] -= scale;
                }
            });
        Ok((CpuStorage::F32(d), ll.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops::testing::{check_gradients, tensor};
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_nn_cross_entropy() {
        let logits = (tensor(&[6, 11], 1) * 3.0).unwrap();
        let targets = Tensor::new(&[0u32, 3, 10, 5, 5, 1], &Device::Cpu).unwrap();
        let ours = cross_entropy(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let reference = candle_nn::loss::cross_entropy(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((ours - reference).abs() < 1e-5, "{ours} vs {reference}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let targets = Tensor::new(&[2u32, 0, 4, 4], &Device::Cpu).unwrap();
        let vars = [Var::from_tensor(&tensor(&[4, 5], 2)).unwrap()];
        check_gradients(&vars, |v| {
            cross_entropy(&v[0], &targets)
                .unwrap()
                .unsqueeze(0)
                .unwrap()
        });
    }

    #[test]
    fn out_of_range_target_is_an_error_not_a_panic() {
        let targets = Tensor::new(&[9u32], &Device::Cpu).unwrap();
        assert!(cross_entropy(&tensor(&[1, 5], 1), &targets).is_err());
    }
}
