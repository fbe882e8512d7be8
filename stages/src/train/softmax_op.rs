//! Softmax over the last dimension for the composite path: the forward by
//! candle-nn's fused kernel (one pass over the scores, on the CPU and on
//! CUDA), the backward written out here. candle-nn's `softmax_last_dim`
//! records no backward pass, so its result is handed to autograd as the
//! result of a custom op on the input whose backward is
//! `dx = p * (g - sum(g * p))`.
//!
//! The op's forward copies the fused result into the storage it returns
//! (candle's custom ops return new storage): two passes over the scores
//! where exp and sum written out were five, and only `p` is kept for the
//! backward instead of the exponentials, their sums and the quotient.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, D, Layout, Result, Shape, Storage, Tensor};

/// Softmax of `x` over its last dimension, with a backward pass.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let p = candle_nn::ops::softmax_last_dim(&x.detach().contiguous()?)?;
    x.apply_op1(Softmax { p })
}

/// The op: its forward is `p`, computed already.
struct Softmax {
    p: Tensor,
}

impl Softmax {
    /// `p`'s storage and shape, checked to be exactly its values.
    fn storage<S>(&self, pick: impl Fn(&Storage) -> Option<&S>) -> Result<(S, Shape)>
    where
        S: BackendStorage,
    {
        let (storage, layout) = self.p.storage_and_layout();
        if !layout.is_contiguous() || layout.start_offset() != 0 {
            candle_core::bail!("softmax: the fused result is not a fresh contiguous tensor");
        }
        let Some(storage) = pick(&storage) else {
            candle_core::bail!("softmax: the fused result is on another device");
        };
        Ok((storage.try_clone(layout)?, layout.shape().clone()))
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim-with-backward"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.storage(|s| match s {
            Storage::Cpu(s) => Some(s),
            _ => None,
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.storage(|s| match s {
            Storage::Cuda(s) => Some(s),
            _ => None,
        })
    }

    fn bwd(&self, _: &Tensor, p: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let dot = (g * p)?.sum_keepdim(D::Minus1)?;
        Ok(Some((g.broadcast_sub(&dot)? * p)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops::testing::{check_gradients, max_diff, tensor};
    use candle_core::Var;

    /// The written-out softmax, exp and sum with candle's own backward.
    fn plain(x: &Tensor) -> Tensor {
        let max = x.max_keepdim(D::Minus1).unwrap().detach();
        let e = x.broadcast_sub(&max).unwrap().exp().unwrap();
        e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap()
    }

    #[test]
    fn values_and_gradients_equal_the_written_out_softmax() {
        let x = Var::from_tensor(&tensor(&[3, 4, 7], 9)).unwrap();
        let w = tensor(&[3, 4, 7], 10);
        assert!(max_diff(&softmax_last_dim(&x).unwrap(), &plain(&x)) < 1e-6);
        let grad = |y: Tensor| {
            let loss = (y * &w).unwrap().sum_all().unwrap();
            loss.backward().unwrap().get(&x).unwrap().clone()
        };
        let ours = grad(softmax_last_dim(&x).unwrap());
        let theirs = grad(plain(&x));
        assert!(
            max_diff(&ours, &theirs) < 1e-6,
            "{}",
            max_diff(&ours, &theirs)
        );
    }

    #[test]
    fn gradients_match_finite_differences_with_a_causal_mask() {
        let vars = [Var::from_tensor(&tensor(&[2, 5, 5], 11)).unwrap()];
        let mask = crate::train::composite::causal_mask(5, &candle_core::Device::Cpu).unwrap();
        check_gradients(&vars, |v| {
            softmax_last_dim(&v[0].broadcast_add(&mask).unwrap()).unwrap()
        });
    }
}
