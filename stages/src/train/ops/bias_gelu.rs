//! `gelu(x + b)` for `x` of shape (rows, n) and a bias `b` of shape (n): the
//! MLP's first layer without the (rows, n) tensor of `x + b` in between,
//! forward or backward. Same values as `gelu(add_bias(x, b))`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::add_bias::ColumnSum;
use super::gelu::{slope, value};
use super::{f32_slice, map_with_bias, rows_per_task};

pub fn bias_gelu(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&b.contiguous()?, BiasGelu)
}

struct BiasGelu;

fn width(xl: &Layout, bl: &Layout) -> Result<usize> {
    match (xl.dims(), bl.dims()) {
        ([.., n], [m]) if n == m && *n > 0 => Ok(*n),
        (x, b) => bail!("bias_gelu: x {x:?} and bias {b:?} do not fit"),
    }
}

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = width(xl, bl)?;
        let x = f32_slice(xs, xl, "bias_gelu")?;
        let b = f32_slice(bs, bl, "bias_gelu")?;
        let y = map_with_bias(x, b, n, |x, b| value(x + b));
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = x.apply_op3_no_bwd(b, &grad.contiguous()?, &BiasGeluBackward)?;
        let db = dx.apply_op1_no_bwd(&ColumnSum)?.reshape(b.shape())?;
        Ok((Some(dx), Some(db)))
    }
}

/// `dx = dy * gelu'(x + b)`; inputs (x, b, dy). The bias gradient is the
/// column sum of `dx`.
struct BiasGeluBackward;

impl CustomOp3 for BiasGeluBackward {
    fn name(&self) -> &'static str {
        "bias-gelu-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = width(xl, bl)?;
        let x = f32_slice(xs, xl, "bias_gelu backward")?;
        let b = f32_slice(bs, bl, "bias_gelu backward")?;
        let dy = f32_slice(gs, gl, "bias_gelu backward")?;
        let mut dx = vec![0f32; x.len()];
        let chunk = rows_per_task(x.len() / n, n) * n;
        dx.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(dy.par_chunks(chunk)))
            .for_each(|(dxc, (xc, dyc))| {
                let rows = dxc
                    .chunks_exact_mut(n)
                    .zip(xc.chunks_exact(n).zip(dyc.chunks_exact(n)));
                for (dxr, (xr, dyr)) in rows {
                    for (((dx, &x), &dy), &b) in dxr.iter_mut().zip(xr).zip(dyr).zip(b) {
                        *dx = dy * slope(x + b);
                    }
                }
            });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops::testing::{check_gradients, tensor};
    use crate::train::ops::{add_bias, gelu};
    use candle_core::Var;

    #[test]
    fn equals_gelu_of_add_bias_forward_and_backward() {
        let x = Var::from_tensor(&(tensor(&[9, 130], 1) * 2.0).unwrap()).unwrap();
        let b = Var::from_tensor(&tensor(&[130], 2)).unwrap();
        let w = tensor(&[9, 130], 3);
        let run = |f: &dyn Fn() -> Tensor| {
            let y = f();
            let grads = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            let dx: Vec<Vec<f32>> = grads.get(&x).unwrap().to_vec2().unwrap();
            let db: Vec<f32> = grads.get(&b).unwrap().to_vec1().unwrap();
            (y.to_vec2::<f32>().unwrap(), dx, db)
        };
        let fused = run(&|| bias_gelu(&x, &b).unwrap());
        let composed = run(&|| gelu(&add_bias(&x, &b).unwrap()).unwrap());
        assert_eq!(fused, composed);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let vars = [
            Var::from_tensor(&tensor(&[6, 5], 4)).unwrap(),
            Var::from_tensor(&tensor(&[5], 5)).unwrap(),
        ];
        check_gradients(&vars, |v| bias_gelu(&v[0], &v[1]).unwrap());
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let err = bias_gelu(&tensor(&[3, 4], 1), &tensor(&[5], 2)).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }
}
