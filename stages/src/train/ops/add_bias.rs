//! `x + b` for `x` of shape (rows, n) and a bias `b` of shape (n). candle's
//! `broadcast_add` records a broadcast node and an add node, and its backward
//! sums the bias gradient with a single-threaded strided reduction; this is
//! one parallel pass each way, and passes the gradient of `x` through as is.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{f32_slice, map_with_bias, vector};

pub fn add_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&b.contiguous()?, AddBias)
}

struct AddBias;

fn width(xl: &Layout, bl: &Layout) -> Result<usize> {
    match (xl.dims(), bl.dims()) {
        ([.., n], [m]) if n == m => Ok(*n),
        (x, b) => bail!("add_bias: x {x:?} and bias {b:?} do not fit"),
    }
}

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = width(xl, bl)?;
        let x = f32_slice(xs, xl, "add_bias")?;
        let b = f32_slice(bs, bl, "add_bias")?;
        let y = map_with_bias(x, b, n, |x, b| x + b);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let db = grad.apply_op1_no_bwd(&ColumnSum)?.reshape(b.shape())?;
        Ok((Some(grad), Some(db)))
    }
}

/// Column sums of a (rows, n) matrix: each column is summed over the rows in
/// order, whatever the thread count, so the result is deterministic.
pub(super) struct ColumnSum;

/// Row blocks of [`column_sums`]: a fixed count, so the summation order
/// (and the result) is the same on any number of threads.
pub(super) const ROW_BLOCKS: usize = 16;

/// Column sums of a (rows, n) matrix: per block of rows (in parallel) the
/// rows are added in order into one n-wide row, a sequential pass over the
/// memory; then the blocks' sums are added in block order.
pub(super) fn column_sums(g: &[f32], n: usize) -> Vec<f32> {
    let n = n.max(1);
    let rows = g.len() / n;
    let chunk = rows.div_ceil(ROW_BLOCKS).max(1) * n;
    let partials: Vec<Vec<f32>> = g
        .par_chunks(chunk)
        .map(|block| {
            let mut sums = vec![0f32; n];
            for row in block.chunks_exact(n) {
                vector::add_row(&mut sums, row);
            }
            sums
        })
        .collect();
    add_partials(partials, n)
}

/// The element-wise sum of `partials` (each n wide), in order.
pub(super) fn add_partials(partials: Vec<Vec<f32>>, n: usize) -> Vec<f32> {
    let mut it = partials.into_iter();
    let mut sums = it.next().unwrap_or_else(|| vec![0f32; n]);
    for p in it {
        vector::add_row(&mut sums, &p);
    }
    sums
}

impl candle_core::CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = match l.dims() {
            [.., n] => *n,
            [] => bail!("column_sum: a scalar has no columns"),
        };
        let g = f32_slice(s, l, "column_sum")?;
        let sums = column_sums(g, n);
        Ok((CpuStorage::F32(sums), Shape::from(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops::testing::{check_gradients, tensor};
    use candle_core::Var;

    #[test]
    fn matches_broadcast_add() {
        let x = tensor(&[7, 300], 1);
        let b = tensor(&[300], 2);
        let diff = (add_bias(&x, &b).unwrap() - x.broadcast_add(&b).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn bias_gradient_is_the_column_sum() {
        let x = Var::from_tensor(&tensor(&[9, 200], 3)).unwrap();
        let b = Var::from_tensor(&tensor(&[200], 4)).unwrap();
        let w = tensor(&[9, 200], 5);
        let grads = add_bias(&x, &b)
            .unwrap()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let ours: Vec<f32> = grads.get(&b).unwrap().to_vec1().unwrap();
        let expected: Vec<f32> = w.sum(0).unwrap().to_vec1().unwrap();
        for (a, e) in ours.iter().zip(&expected) {
            assert!((a - e).abs() < 1e-5, "{a} vs {e}");
        }
        let dx: Vec<Vec<f32>> = grads.get(&x).unwrap().to_vec2().unwrap();
        assert_eq!(dx, w.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let vars = [
            Var::from_tensor(&tensor(&[6, 5], 6)).unwrap(),
            Var::from_tensor(&tensor(&[5], 7)).unwrap(),
        ];
        check_gradients(&vars, |v| add_bias(&v[0], &v[1]).unwrap());
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let err = add_bias(&tensor(&[3, 4], 1), &tensor(&[5], 2)).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }
}
