//! Which implementation of the model's layers a [`Gpt`](super::Gpt) runs:
//! our fused CPU kernels, or candle's composite ops (any device, and
//! optionally in bf16). The model code calls the layers through this, so
//! one forward pass serves both.

use candle_core::{DType, Device, Result, Tensor};

use super::{composite, ops};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// The fused CPU custom ops of `ops` (hand-written backward passes).
    Fused,
    /// candle's own ops with autograd (`composite`), computing in `dtype`
    /// (f32, or bf16 with the weights cast from their f32 masters, the
    /// residual stream, LayerNorm statistics, softmax and loss in f32).
    Composite { dtype: DType },
}

impl Kernels {
    /// The default for a device: fused on the CPU, composite f32 elsewhere
    /// (the fused ops have CPU code only).
    pub fn for_device(device: &Device) -> Kernels {
        if device.is_cpu() {
            Kernels::Fused
        } else {
            Kernels::Composite { dtype: DType::F32 }
        }
    }

    /// The dtype the matrix products run in.
    pub fn dtype(self) -> DType {
        match self {
            Kernels::Fused => DType::F32,
            Kernels::Composite { dtype } => dtype,
        }
    }

    /// LayerNorm of the f32 residual stream, returned in the compute dtype.
    pub fn layer_norm(self, x: &Tensor, (g, b): &(Tensor, Tensor)) -> Result<Tensor> {
        match self {
            Kernels::Fused => ops::layer_norm(x, g, b),
            Kernels::Composite { dtype } => composite::layer_norm(&x.to_dtype(dtype)?, g, b),
        }
    }

    /// `x @ w + b`.
    pub fn linear(self, x: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
        match self {
            Kernels::Fused => ops::add_bias(&x.matmul(w)?, b),
            Kernels::Composite { .. } => composite::linear(x, w, b),
        }
    }

    /// `gelu(x @ w + b)`: the MLP's first layer.
    pub fn linear_gelu(self, x: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
        let xw = x.matmul(&w.to_dtype(x.dtype())?)?;
        match self {
            Kernels::Fused => ops::bias_gelu(&xw, b),
            Kernels::Composite { .. } => composite::bias_gelu(&xw, b),
        }
    }

    /// `x @ w` without bias (the output head), as f32 logits.
    pub fn head(self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        x.matmul(&w.to_dtype(x.dtype())?)?.to_dtype(DType::F32)
    }

    /// Causal self-attention of `qkv` `(batch * t, 3 d)`; the composite
    /// path needs the additive mask of [`Kernels::mask`].
    pub fn attention(
        self,
        qkv: &Tensor,
        batch: usize,
        heads: usize,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        match (self, mask) {
            (Kernels::Fused, _) => ops::causal_attention(qkv, batch, heads),
            (Kernels::Composite { .. }, Some(mask)) => {
                composite::causal_attention(qkv, batch, heads, mask)
            }
            (Kernels::Composite { .. }, None) => {
                candle_core::bail!("composite attention without its causal mask")
            }
        }
    }

    /// The causal mask for sequences of `t` tokens, where this path uses one.
    pub fn mask(self, t: usize, device: &Device) -> Result<Option<Tensor>> {
        match self {
            Kernels::Fused => Ok(None),
            Kernels::Composite { .. } => composite::causal_mask(t, device).map(Some),
        }
    }

    /// A branch's output back in f32, to be added to the residual stream.
    pub fn residual(self, x: Tensor) -> Result<Tensor> {
        x.to_dtype(DType::F32)
    }

    /// Mean cross-entropy (f32 scalar) of `targets` under f32 `logits`.
    pub fn cross_entropy(self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        match self {
            Kernels::Fused => ops::cross_entropy(logits, targets),
            Kernels::Composite { .. } => composite::cross_entropy(logits, targets),
        }
    }
}
