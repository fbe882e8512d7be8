//! Softmax over the last dimension for the composite path: the forward by
//! candle-nn's fused kernel (one pass over the scores, on the CPU and on
//! CUDA), the backward written out here. candle-nn's `softmax_last_dim`
//! records no backward pass, so its result is handed to autograd as the
//! result of a custom op on the input whose backward is
//! `dx = p * (g - sum(g * p))`.
//!
//! An additive mask (the causal one) is applied outside the graph, so
//! autograd keeps two (t, t) matrices per head, the scores and `p`, where
//! exp and sum written out after a mask kept five. The op's forward copies
//! the fused result into the storage it returns (candle's custom ops return
//! new storage) and lets the fused one go.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, D, Layout, Result, Shape, Storage, Tensor};

/// Softmax of `x + mask` over the last dimension (`mask` broadcast, e.g.
/// the causal mask), with a backward pass to `x`.
pub fn softmax_last_dim(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let input = match mask {
        Some(mask) => x.detach().broadcast_add(mask)?,
        None => x.detach().contiguous()?,
    };
    let p = candle_nn::ops::softmax_last_dim(&input)?;
    drop(input);
    x.apply_op1(Softmax {
        p: Mutex::new(Some(p)),
    })
}

/// The op: its forward is `p`, computed already (taken by the forward, so
/// the graph does not keep it beside the op's own result).
struct Softmax {
    p: Mutex<Option<Tensor>>,
}

impl Softmax {
    /// `p`'s storage and shape, checked to be exactly its values.
    fn storage<S>(&self, pick: impl Fn(&Storage) -> Option<&S>) -> Result<(S, Shape)>
    where
        S: BackendStorage,
    {
        // Taken, not borrowed: the graph keeps the op, and `p` is not
        // needed once its values are the op's result.
        let p = self
            .p
            .lock()
            .map_err(|_| candle_core::Error::Msg("softmax: poisoned".into()))?
            .take();
        let Some(p) = p else {
            candle_core::bail!("softmax: the op's forward ran twice");
        };
        let (storage, layout) = p.storage_and_layout();
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
        assert!(max_diff(&softmax_last_dim(&x, None).unwrap(), &plain(&x)) < 1e-6);
        let grad = |y: Tensor| {
            let loss = (y * &w).unwrap().sum_all().unwrap();
            loss.backward().unwrap().get(&x).unwrap().clone()
        };
        let ours = grad(softmax_last_dim(&x, None).unwrap());
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
        check_gradients(&vars, |v| softmax_last_dim(&v[0], Some(&mask)).unwrap());
        // The mask is applied: nothing above the diagonal.
        let p = softmax_last_dim(&vars[0], Some(&mask)).unwrap();
        let row: Vec<f32> = p.get(0).unwrap().get(1).unwrap().to_vec1().unwrap();
        assert!(row[2..].iter().all(|&x| x == 0.0) && (row[0] + row[1] - 1.0).abs() < 1e-6);
    }
}
