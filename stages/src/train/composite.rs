//! The model's layers written out in candle's own tensor ops, every one of
//! which has a backward pass that candle's autograd derives: the path for
//! devices without our fused CPU kernels (CUDA). Same formulas as the fused
//! ops (`super::ops`), so the two paths give the same loss and gradients to
//! rounding (a test checks every parameter).
//!
//! candle-nn's fused `layer_norm`, `softmax_last_dim` and `rms_norm` are
//! deliberately not used as they are: they record no backward pass, and a
//! parameter behind them would silently never learn. The attention's
//! softmax runs candle-nn's fused forward under a backward of our own
//! (`super::softmax_op`).
//!
//! Inputs may be f32 or bf16 (mixed precision): the LayerNorm statistics,
//! the attention softmax and the loss are computed in f32 either way.

use candle_core::{D, DType, Device, Result, Tensor};

/// LayerNorm's epsilon, as in the fused kernel.
const EPS: f64 = 1e-5;

/// `(x - mean) / sqrt(var + eps) * g + b` over the last dimension, in f32;
/// the result in `x`'s dtype.
pub fn layer_norm(x: &Tensor, g: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + EPS)?.sqrt()?)?;
    let g = g.to_dtype(DType::F32)?;
    let b = b.to_dtype(DType::F32)?;
    normed.broadcast_mul(&g)?.broadcast_add(&b)?.to_dtype(dtype)
}

/// `x @ w + b` for `x` of shape (n, in), in `x`'s dtype.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    x.matmul(&w.to_dtype(dtype)?)?
        .broadcast_add(&b.to_dtype(dtype)?)
}

/// `gelu(x + b)`, the tanh approximation (`Tensor::gelu`, GPT-2's formula,
/// the fused kernel's).
pub fn bias_gelu(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.broadcast_add(&b.to_dtype(x.dtype())?)?.gelu()
}

/// The additive causal mask `(t, t)`: 0 on and below the diagonal, -inf
/// above (a query never sees a later key).
pub fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t * t)
        .map(|i| {
            if i % t > i / t {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(mask, (t, t), device)
}

/// Causal multi-head self-attention of `qkv` `(batch * t, 3 d)` (columns
/// `(3, heads, head_dim)`, as the fused op takes it), returned as
/// `(batch * t, d)` in `qkv`'s dtype. `mask` is [`causal_mask`] of `t`.
pub fn causal_attention(qkv: &Tensor, batch: usize, heads: usize, mask: &Tensor) -> Result<Tensor> {
    let (rows, width) = qkv.dims2()?;
    let (t, d) = (rows / batch, width / 3);
    let hd = d / heads;
    let dtype = qkv.dtype();
    let qkv = qkv.reshape((batch, t, 3, heads, hd))?;
    // (batch, heads, t, hd) each.
    let part = |i: usize| {
        qkv.narrow(2, i, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (part(0)?, part(1)?, part(2)?);
    // Scaling q rather than the scores spares one (t, t) tensor per head.
    let q = (q * (1.0 / (hd as f64).sqrt()))?;
    let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
    let p = super::softmax_op::softmax_last_dim(&scores, Some(mask))?.to_dtype(dtype)?;
    p.matmul(&v)?.transpose(1, 2)?.reshape((rows, d))
}

/// Mean cross-entropy (nats, f32) of `targets` `(n,)` (u32) under `logits`
/// `(n, v)`: the log-softmax written out, then the targets' entries.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let log_p = shifted.broadcast_sub(&lse)?;
    let picked = log_p.gather(&targets.unsqueeze(1)?.contiguous()?, 1)?;
    picked.mean_all()?.neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops;
    use crate::train::ops::testing::{check_gradients, max_diff, tensor};
    use candle_core::Var;

    #[test]
    fn each_layer_matches_its_fused_op() {
        let x = tensor(&[6, 12], 1);
        let (g, b) = (tensor(&[12], 2), tensor(&[12], 3));
        let fused = ops::layer_norm(&x, &g, &b).unwrap();
        assert!(max_diff(&layer_norm(&x, &g, &b).unwrap(), &fused) < 1e-5);
        let fused = ops::bias_gelu(&x, &b).unwrap();
        assert!(max_diff(&bias_gelu(&x, &b).unwrap(), &fused) < 1e-5);
        let (batch, heads, t) = (2, 2, 5);
        let qkv = tensor(&[batch * t, 12], 4);
        let mask = causal_mask(t, &Device::Cpu).unwrap();
        let ours = causal_attention(&qkv, batch, heads, &mask).unwrap();
        let fused = ops::causal_attention(&qkv, batch, heads).unwrap();
        assert!(max_diff(&ours, &fused) < 1e-5);
        let targets = Tensor::new(&[0u32, 3, 11, 5, 5, 1], &Device::Cpu).unwrap();
        let ours = cross_entropy(&x, &targets).unwrap();
        let fused = ops::cross_entropy(&x, &targets).unwrap();
        assert!(max_diff(&ours, &fused) < 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let vars = [
            Var::from_tensor(&tensor(&[6, 6], 5)).unwrap(),
            Var::from_tensor(&tensor(&[6], 6)).unwrap(),
            Var::from_tensor(&tensor(&[6], 7)).unwrap(),
        ];
        let mask = causal_mask(3, &Device::Cpu).unwrap();
        check_gradients(&vars, |v| {
            let h = layer_norm(&v[0], &v[1], &v[2]).unwrap();
            let a = causal_attention(&h.repeat((1, 3)).unwrap(), 2, 2, &mask).unwrap();
            bias_gelu(&a, &v[2]).unwrap()
        });
    }

    /// bf16 inputs come back as bf16, computed through f32 where it matters.
    #[test]
    fn bf16_stays_bf16_and_close_to_f32() {
        let x = tensor(&[4, 6], 8);
        let (g, b) = (tensor(&[6], 9), tensor(&[6], 10));
        let half = layer_norm(&x.to_dtype(DType::BF16).unwrap(), &g, &b).unwrap();
        assert_eq!(half.dtype(), DType::BF16);
        let full = layer_norm(&x, &g, &b).unwrap();
        assert!(max_diff(&half.to_dtype(DType::F32).unwrap(), &full) < 0.05);
    }
}
