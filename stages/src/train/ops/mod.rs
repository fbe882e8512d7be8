//! Fused CPU kernels with their backward passes, as candle custom ops.
//!
//! candle's own fused ops (`ops::layer_norm`, `softmax_last_dim`, ...) record
//! no backward pass, and its composed ones allocate a tensor per elementwise
//! step. These do one pass forward and one pass backward, parallel over rows
//! (so their results do not depend on the thread count).

mod add_bias;
mod attention_kernels;
mod bias_gelu;
mod causal_attention;
mod causal_softmax;
mod cross_entropy;
#[cfg(target_arch = "x86_64")]
mod exp_avx2;
mod fused_step;
mod gelu;
#[cfg(target_arch = "x86_64")]
mod gelu_avx2;
mod layer_norm;
pub mod matmul;
mod vector;

pub use add_bias::add_bias;
pub use bias_gelu::bias_gelu;
pub use causal_attention::{causal_attention, causal_attention_blocked};
pub use causal_softmax::causal_softmax;
pub use cross_entropy::{cross_entropy, cross_entropy_bwd_op};
pub use fused_step::{BlockWeights, Dims as StepDims, Weights, train_step};
pub use gelu::gelu;
pub use layer_norm::layer_norm;
pub(crate) use vector::adamw;

use candle_core::{CpuStorage, Layout, Result, bail};
use rayon::prelude::*;

/// The contiguous f32 data behind a storage and layout.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: the input must be contiguous"),
    }
}

/// A vector of `len` floats left uninitialised, for buffers that are
/// written whole before they are read (a zero fill would be one more pass
/// over memory the allocator has used before). Measured against
/// `vec![0f32; len]` at every call site: -3.5% CPU per training step at
/// context 256, -4% at 1,024 (1 thread, 3 alternating pairs each).
/// Callers only write through the slices before reading them.
#[allow(clippy::uninit_vec)]
fn uninit(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: f32 has no invalid bit patterns, and every caller writes each
    // element before reading it.
    unsafe { v.set_len(len) };
    v
}

/// Rows per parallel task: enough work per task to pay for the hand-off.
fn rows_per_task(rows: usize, width: usize) -> usize {
    (16_384 / width.max(1)).clamp(1, rows.max(1))
}

/// `f(x[r][c], b[c])` for every row `r` of `x` (width `n`), in parallel
/// over blocks of rows: the forward pass of the bias ops.
fn map_with_bias(x: &[f32], b: &[f32], n: usize, f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    let chunk = (rows_per_task(x.len() / n.max(1), n) * n).max(1);
    y.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_exact_mut(n).zip(xc.chunks_exact(n)) {
                for ((y, &x), &b) in yr.iter_mut().zip(xr).zip(b) {
                    *y = f(x, b);
                }
            }
        });
    y
}

#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Device, Tensor, Var};

    /// A deterministic test tensor with values in about [-2, 2].
    pub fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = crate::train::rng::Rng::new(seed);
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    /// `f` run on a pool of `threads` threads (the determinism tests).
    pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    /// The largest absolute difference between two tensors.
    pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Checks the analytic gradient of `f(vars).sum_weighted` against
    /// central finite differences in f64-ish precision at a few positions.
    pub fn check_gradients(vars: &[Var], f: impl Fn(&[Var]) -> Tensor) {
        // A fixed random weighting makes the scalar sensitive to every output.
        let out = f(vars);
        let weights = tensor(out.dims(), 99);
        let loss = |vs: &[Var]| f(vs).mul(&weights).unwrap().sum_all().unwrap();
        let grads = loss(vars).backward().unwrap();
        for (vi, var) in vars.iter().enumerate() {
            let analytic: Vec<f32> = grads
                .get(var)
                .unwrap_or_else(|| panic!("var {vi} got no gradient"))
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
            let step = (base.len() / 7).max(1);
            for i in (0..base.len()).step_by(step) {
                let eps = 1e-2f32;
                let at = |delta: f32| {
                    let mut moved = base.clone();
                    moved[i] += delta;
                    var.set(&Tensor::from_vec(moved, var.dims(), &Device::Cpu).unwrap())
                        .unwrap();
                    loss(vars).to_scalar::<f32>().unwrap() as f64
                };
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
                var.set(&Tensor::from_vec(base.clone(), var.dims(), &Device::Cpu).unwrap())
                    .unwrap();
                let a = analytic[i] as f64;
                assert!(
                    (a - numeric).abs() <= 2e-2 * (1.0 + numeric.abs()),
                    "var {vi} element {i}: analytic {a}, numeric {numeric}"
                );
            }
        }
    }
}
