//! GELU, tanh approximation (GPT-2's): `0.5 x (1 + tanh(c (x + 0.044715 x^3)))`.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_slice;
use crate::train::fastmath;

pub(super) const C: f32 = 0.797_884_6; // sqrt(2 / pi)
pub(super) const A: f32 = 0.044_715;
const CHUNK: usize = 16_384;

/// The tanh both GELU and its slope are made of.
#[inline(always)]
pub(super) fn inner_tanh(x: f32) -> f32 {
    fastmath::tanh(C * (x + A * x * x * x))
}

/// GELU of one value.
#[inline(always)]
pub(super) fn value(x: f32) -> f32 {
    0.5 * x * (1.0 + inner_tanh(x))
}

/// d GELU / dx at one value.
#[inline(always)]
pub(super) fn slope(x: f32) -> f32 {
    slope_with(x, inner_tanh(x))
}

/// GELU and its slope at one value, the tanh computed once (the bits of
/// [`value`] and [`slope`]).
#[inline(always)]
pub(super) fn value_and_slope(x: f32) -> (f32, f32) {
    value_and_slope_with(x, inner_tanh(x))
}

/// [`value_and_slope`] from the tanh computed already ([`inner_tanh`]).
#[inline(always)]
pub(super) fn value_and_slope_with(x: f32, t: f32) -> (f32, f32) {
    (0.5 * x * (1.0 + t), slope_with(x, t))
}

#[inline(always)]
fn slope_with(x: f32, t: f32) -> f32 {
    let dt = (1.0 - t * t) * C * (1.0 + 3.0 * A * x * x);
    0.5 * (1.0 + t) + 0.5 * x * dt
}

pub fn gelu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "gelu")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(yc, xc)| {
                for (y, &x) in yc.iter_mut().zip(xc) {
                    *y = value(x);
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            x.apply_op2_no_bwd(&grad.contiguous()?, &GeluBackward)?,
        ))
    }
}

/// `dx = dy * gelu'(x)`; inputs (x, dy).
struct GeluBackward;

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(xs, xl, "gelu backward")?;
        let dy = f32_slice(gs, gl, "gelu backward")?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
            .for_each(|(dxc, (xc, dyc))| {
                for ((dx, &x), &dy) in dxc.iter_mut().zip(xc).zip(dyc) {
                    *dx = dy * slope(x);
                }
            });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops::testing::{check_gradients, tensor};
    use candle_core::Var;

    #[test]
    fn matches_candle_gelu() {
        let x = (tensor(&[7, 9], 1) * 3.0).unwrap();
        let diff = (gelu(&x).unwrap() - x.gelu().unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let vars = [Var::from_tensor(&tensor(&[5, 8], 2)).unwrap()];
        check_gradients(&vars, |v| gelu(&v[0]).unwrap());
    }
}
