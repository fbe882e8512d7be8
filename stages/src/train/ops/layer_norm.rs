//! LayerNorm over the last dimension: `y = (x - mean) / sqrt(var + eps) * g + b`.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{f32_slice, rows_per_task, vector};

const EPS: f32 = 1e-5;

/// LayerNorm of `x` (.., d) with gain `g` (d) and bias `b` (d), differentiable
/// in all three.
pub fn layer_norm(x: &Tensor, g: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(g, b, LayerNorm)
}

struct LayerNorm;

fn dims(x: &Layout, g: &Layout, b: &Layout) -> Result<(usize, usize)> {
    let d = *x.dims().last().unwrap_or(&0);
    if g.dims() != [d] || b.dims() != [d] {
        bail!(
            "layer_norm: gain {:?} and bias {:?} must match the last dimension of {:?}",
            g.dims(),
            b.dims(),
            x.dims()
        );
    }
    Ok((x.shape().elem_count() / d.max(1), d))
}

/// The forward pass on rows of width `d`.
pub(super) fn forward(x: &[f32], g: &[f32], b: &[f32], d: usize) -> Vec<f32> {
    let rows = x.len() / d.max(1);
    let mut y = super::uninit(rows * d); // written whole, row by row
    let chunk = rows_per_task(rows, d) * d;
    y.par_chunks_mut(chunk.max(1))
        .zip(x.par_chunks(chunk.max(1)))
        .for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_exact_mut(d).zip(xc.chunks_exact(d)) {
                vector::layer_norm_row(yr, xr, g, b, EPS);
            }
        });
    y
}

/// The backward pass: writes (or with `accumulate`, adds) `dx` and returns
/// the gain and bias gradients.
pub(super) fn backward(
    x: &[f32],
    g: &[f32],
    dy: &[f32],
    d: usize,
    dx: &mut [f32],
    accumulate: bool,
) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / d.max(1);
    let rows_per_block = rows.div_ceil(BLOCKS).max(1);
    let chunk = rows_per_block * d;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(chunk.max(1))
        .zip(x.par_chunks(chunk.max(1)).zip(dy.par_chunks(chunk.max(1))))
        .map(|(dxc, (xc, dyc))| {
            let mut dg = vec![0f32; d];
            let mut db = vec![0f32; d];
            for ((dxr, xr), dyr) in dxc
                .chunks_exact_mut(d)
                .zip(xc.chunks_exact(d))
                .zip(dyc.chunks_exact(d))
            {
                vector::layer_norm_row_backward(dxr, xr, dyr, g, &mut dg, &mut db, EPS, accumulate);
            }
            (dg, db)
        })
        .collect();
    let (mut dg, mut db) = (vec![0f32; d], vec![0f32; d]);
    for (pg, pb) in &partials {
        for i in 0..d {
            dg[i] += pg[i];
            db[i] += pb[i];
        }
    }
    (dg, db)
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, d) = dims(xl, gl, bl)?;
        let x = f32_slice(xs, xl, "layer_norm")?;
        let g = f32_slice(gs, gl, "layer_norm")?;
        let b = f32_slice(bs, bl, "layer_norm")?;
        let y = forward(x, g, b, d);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = g.elem_count();
        let n = x.elem_count();
        let packed = x.apply_op3_no_bwd(g, &grad.contiguous()?, &LayerNormBackward)?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dg = packed.narrow(0, n, d)?.reshape(g.shape())?;
        let db = packed.narrow(0, n + d, d)?.reshape(b.shape())?;
        Ok((Some(dx), Some(dg), Some(db)))
    }
}

/// The backward pass: inputs (x, g, dy), output `[dx.., dg.., db..]` flat.
struct LayerNormBackward;

/// Row blocks for the gain and bias gradient sums: a fixed count, so the
/// summation order (and the result) is the same on any number of threads.
const BLOCKS: usize = 32;

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, d) = dims(xl, gl, gl)?;
        let x = f32_slice(xs, xl, "layer_norm backward")?;
        let g = f32_slice(gs, gl, "layer_norm backward")?;
        let dy = f32_slice(dys, dyl, "layer_norm backward")?;
        let mut out = vec![0f32; rows * d + 2 * d];
        let (dx, rest) = out.split_at_mut(rows * d);
        let (dg, db) = backward(x, g, dy, d, dx, false);
        rest[..d].copy_from_slice(&dg);
        rest[d..].copy_from_slice(&db);
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops::testing::{check_gradients, tensor};
    use candle_core::{D, Var};

    #[test]
    fn matches_the_composed_formula() {
        let x = tensor(&[3, 5, 8], 1);
        let g = tensor(&[8], 2);
        let b = tensor(&[8], 3);
        let ours = layer_norm(&x, &g, &b).unwrap();
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let centered = x.broadcast_sub(&mean).unwrap();
        let var = centered.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let reference = centered
            .broadcast_div(&(var + EPS as f64).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&g)
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let diff = (ours - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let vars = [
            Var::from_tensor(&tensor(&[4, 6], 4)).unwrap(),
            Var::from_tensor(&tensor(&[6], 5)).unwrap(),
            Var::from_tensor(&tensor(&[6], 6)).unwrap(),
        ];
        check_gradients(&vars, |v| layer_norm(&v[0], &v[1], &v[2]).unwrap());
    }
}
