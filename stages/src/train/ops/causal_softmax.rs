//! Scaled, causally masked softmax for attention scores `(.., t, t)`: row `i`
//! is `softmax(scale * x[i, ..=i])`, and zero right of the diagonal. Fusing
//! the scale and the mask saves two full passes and a mask tensor.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{f32_slice, rows_per_task};
use crate::train::fastmath;

pub fn causal_softmax(scores: &Tensor, scale: f32) -> Result<Tensor> {
    scores.contiguous()?.apply_op1(CausalSoftmax { scale })
}

struct CausalSoftmax {
    scale: f32,
}

fn square_side(l: &Layout) -> Result<usize> {
    match l.dims() {
        [.., a, b] if a == b => Ok(*b),
        dims => bail!("causal_softmax: expected (.., t, t) scores, got {dims:?}"),
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let t = square_side(l)?;
        let x = f32_slice(s, l, "causal_softmax")?;
        let mut y = vec![0f32; x.len()];
        let chunk = rows_per_task(x.len() / t.max(1), t) * t;
        let scale = self.scale;
        y.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .enumerate()
            .for_each(|(c, (yc, xc))| {
                let first_row = c * chunk / t;
                for (r, (yr, xr)) in yc.chunks_exact_mut(t).zip(xc.chunks_exact(t)).enumerate() {
                    let len = (first_row + r) % t + 1;
                    let (yr, xr) = (&mut yr[..len], &xr[..len]);
                    let max = xr.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let mut sum = 0f32;
                    for (y, &x) in yr.iter_mut().zip(xr) {
                        *y = fastmath::exp(scale * (x - max));
                        sum += *y;
                    }
                    let inv = 1.0 / sum;
                    yr.iter_mut().for_each(|y| *y *= inv);
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = CausalSoftmaxBackward { scale: self.scale };
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

/// `dx = scale * y * (dy - sum(dy * y))` per row; inputs (y, dy). Masked
/// entries have y = 0 and so get no gradient.
struct CausalSoftmaxBackward {
    scale: f32,
}

impl CustomOp2 for CausalSoftmaxBackward {
    fn name(&self) -> &'static str {
        "causal-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let t = square_side(yl)?;
        let y = f32_slice(ys, yl, "causal_softmax backward")?;
        let dy = f32_slice(gs, gl, "causal_softmax backward")?;
        let mut dx = vec![0f32; y.len()];
        let chunk = rows_per_task(y.len() / t.max(1), t) * t;
        let scale = self.scale;
        dx.par_chunks_mut(chunk)
            .zip(y.par_chunks(chunk).zip(dy.par_chunks(chunk)))
            .enumerate()
            .for_each(|(c, (dxc, (yc, dyc)))| {
                let first_row = c * chunk / t;
                let rows = dxc
                    .chunks_exact_mut(t)
                    .zip(yc.chunks_exact(t).zip(dyc.chunks_exact(t)));
                for (r, (dxr, (yr, dyr))) in rows.enumerate() {
                    let len = (first_row + r) % t + 1;
                    let dot: f32 = yr[..len].iter().zip(&dyr[..len]).map(|(a, b)| a * b).sum();
                    for i in 0..len {
                        dxr[i] = scale * yr[i] * (dyr[i] - dot);
                    }
                }
            });
        Ok((CpuStorage::F32(dx), yl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops::testing::{check_gradients, tensor};
    use candle_core::{D, Device, Var};

    #[test]
    fn matches_masked_softmax() {
        let t = 6;
        let x = tensor(&[2, 3, t, t], 1);
        let ours = causal_softmax(&x, 0.5).unwrap();
        let mask: Vec<f32> = (0..t * t)
            .map(|k| {
                if k % t > k / t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &Device::Cpu).unwrap();
        let masked = (x * 0.5).unwrap().broadcast_add(&mask).unwrap();
        let reference = candle_nn::ops::softmax(&masked, D::Minus1).unwrap();
        let diff = (ours - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let vars = [Var::from_tensor(&tensor(&[2, 5, 5], 2)).unwrap()];
        check_gradients(&vars, |v| causal_softmax(&v[0], 0.7).unwrap());
    }
}
