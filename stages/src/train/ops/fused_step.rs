//! One training step of the whole model, forward and backward, on plain f32
//! buffers: the same arithmetic as the autograd path (`Gpt::forward_flat`,
//! `cross_entropy`, `backward`) through the same kernels, without candle's
//! graph. That graph gives every node's gradient a zero-filled tensor plus a
//! separate add (a third of a gradient's memory traffic, on candle's own
//! thread pool) and allocates each intermediate afresh; here every gradient
//! is written once where it is needed, residual gradients accumulate in
//! place, bias rows are the starting value of their matrix products, and the
//! weight gradients come back as one vector per parameter for AdamW.
//!
//! Kept between the passes, per layer: the block input, both LayerNorm
//! outputs, the QKV projection, the attention output and its probabilities
//! (`causal_attention::Kept`), the residual after attention, the GELU of the MLP
//! pre-activation and its slope there.

use rayon::prelude::*;

use super::add_bias::column_sums;
use super::add_bias::{ROW_BLOCKS, add_partials};
use super::causal_attention::{self, BLOCK};
use super::cross_entropy::log_sum_exp;
use super::{layer_norm, matmul, rows_per_task, uninit, vector};
use crate::train::fastmath;

/// One block's weights, in `ModelConfig::parameter_shapes` order.
pub struct BlockWeights<'a> {
    pub ln1: (&'a [f32], &'a [f32]),
    pub qkv: (&'a [f32], &'a [f32]),
    pub proj: (&'a [f32], &'a [f32]),
    pub ln2: (&'a [f32], &'a [f32]),
    pub fc: (&'a [f32], &'a [f32]),
    pub mlp_proj: (&'a [f32], &'a [f32]),
}

/// The model's weights as slices.
pub struct Weights<'a> {
    pub tok_emb: &'a [f32],
    pub pos_emb: &'a [f32],
    pub blocks: Vec<BlockWeights<'a>>,
    pub ln_f: (&'a [f32], &'a [f32]),
    pub head: &'a [f32],
}

/// Sizes of the step.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub vocab: usize,
    pub d: usize,
    pub heads: usize,
    pub hidden: usize,
    pub batch: usize,
    pub t: usize,
}

/// What the forward keeps of one block for the backward.
struct Saved {
    x_in: Vec<f32>,
    h1: Vec<f32>,
    qkv: Vec<f32>,
    y: Vec<f32>,
    kept: causal_attention::Kept,
    attn_mask: Option<Vec<f32>>,
    x1: Vec<f32>,
    h2: Vec<f32>,
    /// `gelu'` at the MLP pre-activation.
    slope: Vec<f32>,
    g: Vec<f32>,
    mlp_mask: Option<Vec<f32>>,
}

/// `c (m x n) [+]= a (m x k) @ b (k x n)` for row-major operands given with
/// their (row, column) strides.
#[allow(clippy::too_many_arguments)]
fn product(
    c: &mut [f32],
    dims: (usize, usize, usize),
    accumulate: bool,
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
) {
    let a = matmul::Operand {
        data: a,
        strides: a_strides,
    };
    let b = matmul::Operand {
        data: b,
        strides: b_strides,
    };
    matmul::product(c, dims, accumulate, a, b)
}

/// `x (rows, i) @ w (i, o) + b`, the bias added to the finished products.
fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, i: usize, o: usize) -> Vec<f32> {
    let rows = x.len() / i;
    let mut y = uninit(rows * o); // written whole by the product
    product(&mut y, (rows, o, i), false, x, (i, 1), w, (o, 1));
    if let Some(b) = b {
        let chunk = rows_per_task(rows, o) * o;
        y.par_chunks_mut(chunk).for_each(|c| {
            for r in c.chunks_exact_mut(o) {
                vector::add_row(r, b);
            }
        });
    }
    y
}

/// `dx (rows, i) [+]= dy (rows, o) @ w^T` for `w` (i, o).
fn grad_input(dx: &mut [f32], dy: &[f32], w: &[f32], i: usize, o: usize, accumulate: bool) {
    let rows = dy.len() / o;
    product(dx, (rows, i, o), accumulate, dy, (o, 1), w, (1, o));
}

/// `dw (i, o) = x^T (i, rows) @ dy (rows, o)`.
fn grad_weight(x: &[f32], dy: &[f32], i: usize, o: usize) -> Vec<f32> {
    let rows = dy.len() / o;
    let mut dw = uninit(i * o); // written whole by the product
    if o < i {
        // gemm runs `x^T dy` for a wide `x` (the MLP's output projection,
        // 1,024 x 256) at ~90 GFLOP/s and `dy^T x` at ~97: compute
        // dw^T (o, i) and transpose it (same products, same sums).
        let mut dwt = uninit(o * i);
        product(&mut dwt, (o, i, rows), false, dy, (1, o), x, (i, 1));
        transpose_into(&mut dw, &dwt, o, i);
    } else {
        product(&mut dw, (i, o, rows), false, x, (1, i), dy, (o, 1));
    }
    dw
}

/// `dst (cols, rows) = src (rows, cols)^T`, in strips of 16 source rows
/// (each destination row gets 16 consecutive floats per strip).
fn transpose_into(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c in 0..cols {
            for r in r0..r1 {
                dst[c * rows + r] = src[r * cols + c];
            }
        }
    }
}

/// `a *= m` elementwise, in parallel.
fn mul_in_place(a: &mut [f32], m: &[f32]) {
    a.par_chunks_mut(16_384)
        .zip(m.par_chunks(16_384))
        .for_each(|(a, m)| a.iter_mut().zip(m).for_each(|(a, m)| *a *= m));
}

/// `out = x + mask (out + b)` for rows of width `b.len()` (the bias `b`
/// added per row, `mask` elementwise where given), in parallel: a residual
/// connection around a linear layer whose product `out` was computed
/// without its bias (the same operations, in the same order, as a bias
/// start value, a mask pass and an add pass).
fn residual(out: &mut [f32], b: &[f32], mask: Option<&[f32]>, x: &[f32]) {
    let w = b.len();
    let chunk = rows_per_task(out.len() / w.max(1), w) * w;
    let x = x.par_chunks(chunk);
    match mask {
        Some(m) => out
            .par_chunks_mut(chunk)
            .zip(x.zip(m.par_chunks(chunk)))
            .for_each(|(o, (x, m))| {
                for ((o, x), m) in o
                    .chunks_exact_mut(w)
                    .zip(x.chunks_exact(w))
                    .zip(m.chunks_exact(w))
                {
                    vector::residual_row_masked(o, b, m, x);
                }
            }),
        None => out.par_chunks_mut(chunk).zip(x).for_each(|(o, x)| {
            for (o, x) in o.chunks_exact_mut(w).zip(x.chunks_exact(w)) {
                vector::residual_row(o, b, x);
            }
        }),
    }
}

/// The mean cross-entropy of `targets` under `logits` (n, v), and its
/// gradient written over the logits: `(softmax - onehot) / n`. Same chunking
/// and f64 partial sums as the `cross_entropy` op, so the same loss.
fn cross_entropy_in_place(logits: &mut [f32], targets: &[u32], v: usize) -> f32 {
    let n = targets.len();
    let rows = rows_per_task(n, v);
    let scale = 1.0 / n.max(1) as f32;
    let partial: Vec<f64> = logits
        .par_chunks_mut(rows * v)
        .zip(targets.par_chunks(rows))
        .map(|(lc, tc)| {
            let mut sum = 0f64;
            for (row, &t) in lc.chunks_exact_mut(v).zip(tc) {
                let (max, lse) = log_sum_exp(row);
                sum += (lse - row[t as usize]) as f64;
                vector::scaled_exp(row, scale * fastmath::exp(max - lse), max);
                row[t as usize] -= scale;
            }
            sum
        })
        .collect();
    (partial.iter().sum::<f64>() / n.max(1) as f64) as f32
}

/// `out[idx(r)] += dx[r]` for every row `r` of `dx` (width `d`), rows in
/// order, in parallel over column strips (deterministic for any threads).
fn scatter_rows(out: &mut [f32], dx: &[f32], d: usize, idx: impl Fn(usize) -> usize + Sync) {
    const STRIP: usize = 64;
    let strips = d.div_ceil(STRIP);
    let rows_out = out.len() / d;
    // Each task owns columns [s*STRIP, ..) of every output row.
    let mut columns: Vec<Vec<f32>> = (0..strips)
        .into_par_iter()
        .map(|s| {
            let (c0, c1) = (s * STRIP, ((s + 1) * STRIP).min(d));
            let w = c1 - c0;
            let mut acc = vec![0f32; rows_out * w];
            for (r, row) in dx.chunks_exact(d).enumerate() {
                let o = idx(r) * w;
                for (a, &g) in acc[o..o + w].iter_mut().zip(&row[c0..c1]) {
                    *a += g;
                }
            }
            acc
        })
        .collect();
    for (s, acc) in columns.iter_mut().enumerate() {
        let (c0, c1) = (s * STRIP, ((s + 1) * STRIP).min(d));
        let w = c1 - c0;
        for (r, src) in acc.chunks_exact(w).enumerate() {
            out[r * d + c0..r * d + c1].copy_from_slice(src);
        }
    }
}

/// CPU time of the calling thread per phase of a step, printed to stderr
/// after each step when `VGMAKE_STEP_PROFILE` is set (a tool for work on
/// the kernels: at 1 thread it is the whole step's time, phase by phase).
struct Phases {
    on: bool,
    last: f64,
    acc: Vec<(&'static str, f64)>,
}

impl Phases {
    fn new() -> Self {
        let on = std::env::var_os("VGMAKE_STEP_PROFILE").is_some();
        Phases {
            on,
            last: if on { thread_cpu_seconds() } else { 0.0 },
            acc: Vec::new(),
        }
    }

    fn mark(&mut self, name: &'static str) {
        if !self.on {
            return;
        }
        let now = thread_cpu_seconds();
        let dt = now - self.last;
        self.last = now;
        match self.acc.iter_mut().find(|e| e.0 == name) {
            Some(e) => e.1 += dt,
            None => self.acc.push((name, dt)),
        }
    }

    fn report(&self) {
        if self.on {
            let total: f64 = self.acc.iter().map(|e| e.1).sum();
            let parts: Vec<String> = self
                .acc
                .iter()
                .map(|(n, s)| format!("{n} {:.1}", s * 1e3))
                .collect();
            eprintln!(
                "step profile (ms, thread CPU): total {:.1}; {}",
                total * 1e3,
                parts.join(", ")
            );
        }
    }
}

/// This thread's CPU time in seconds (the step profile; the attention's
/// speed test).
pub(super) fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs the forward and backward of one batch: `ids` and `targets` are
/// `batch * t` ids; `mask(len)` draws a dropout mask of `len` values (or
/// `None`) in the order of the autograd path: after the embeddings, then
/// per block after the attention projection and after the MLP. Returns the
/// mean loss and the gradients in `ModelConfig::parameter_shapes` order.
pub fn train_step(
    w: &Weights,
    dims: Dims,
    ids: &[u32],
    targets: &[u32],
    mask: &mut dyn FnMut(usize) -> Option<Vec<f32>>,
) -> (f32, Vec<Vec<f32>>) {
    let Dims {
        vocab,
        d,
        heads,
        hidden,
        batch,
        t,
    } = dims;
    let n = batch * t;
    let mut prof = Phases::new();
    assert_eq!(ids.len(), n);
    assert_eq!(targets.len(), n);

    // Embeddings.
    let mut x = vec![0f32; n * d];
    x.par_chunks_mut(d).enumerate().for_each(|(r, row)| {
        let tok = &w.tok_emb[ids[r] as usize * d..][..d];
        let pos = &w.pos_emb[(r % t) * d..][..d];
        for ((x, a), b) in row.iter_mut().zip(tok).zip(pos) {
            *x = a + b;
        }
    });
    let emb_mask = mask(n * d);
    prof.mark("emb");
    if let Some(m) = &emb_mask {
        mul_in_place(&mut x, m);
    }

    // Blocks.
    let attn_dims = causal_attention::dims_of(n, 3 * d, batch, heads, BLOCK)
        .expect("train_step: attention shapes");
    let mut saved = Vec::with_capacity(w.blocks.len());
    for blk in &w.blocks {
        let x_in = x;
        let h1 = layer_norm::forward(&x_in, blk.ln1.0, blk.ln1.1, d);
        prof.mark("f.ln1");
        let qkv = linear(&h1, blk.qkv.0, Some(blk.qkv.1), d, 3 * d);
        prof.mark("f.qkv");
        let (y, _, kept) = causal_attention::forward_keeping_probs(&qkv, batch, attn_dims);
        prof.mark("f.attn");
        // The bias joins in the residual pass: x1 = x_in + mask (y Wp + bp).
        let mut x1 = linear(&y, blk.proj.0, None, d, d);
        prof.mark("f.proj");
        let attn_mask = mask(n * d);
        residual(&mut x1, blk.proj.1, attn_mask.as_deref(), &x_in);
        prof.mark("f.res1");
        let h2 = layer_norm::forward(&x1, blk.ln2.0, blk.ln2.1, d);
        prof.mark("f.ln2");
        // The bias joins in the GELU pass: u = h2 @ W + b, g = gelu(u),
        // and u's buffer keeps gelu'(u) for the backward.
        let mut u = linear(&h2, blk.fc.0, None, d, hidden);
        prof.mark("f.fc");
        let mut g = uninit(u.len());
        let rows = rows_per_task(n, hidden) * hidden;
        g.par_chunks_mut(rows)
            .zip(u.par_chunks_mut(rows))
            .for_each(|(g, u)| {
                for (g, u) in g.chunks_exact_mut(hidden).zip(u.chunks_exact_mut(hidden)) {
                    vector::bias_gelu_row(u, g, blk.fc.1);
                }
            });
        prof.mark("f.gelu");
        let mut x2 = linear(&g, blk.mlp_proj.0, None, hidden, d);
        prof.mark("f.mlp");
        let mlp_mask = mask(n * d);
        residual(&mut x2, blk.mlp_proj.1, mlp_mask.as_deref(), &x1);
        prof.mark("f.res2");
        x = x2;
        saved.push(Saved {
            x_in,
            h1,
            qkv,
            y,
            kept,
            attn_mask,
            x1,
            h2,
            slope: u,
            g,
            mlp_mask,
        });
    }
    let hf = layer_norm::forward(&x, w.ln_f.0, w.ln_f.1, d);
    prof.mark("f.lnf");
    let mut logits = linear(&hf, w.head, None, d, vocab);
    prof.mark("f.head");
    let loss = cross_entropy_in_place(&mut logits, targets, vocab);
    prof.mark("xent");
    let dlogits = logits;

    // Backward, collecting the gradients from the last parameter back.
    let mut rev: Vec<Vec<f32>> = Vec::with_capacity(3 + 12 * w.blocks.len() + 2);
    rev.push(grad_weight(&hf, &dlogits, d, vocab));
    prof.mark("b.head_w");
    drop(hf);
    let mut dhf = uninit(n * d); // written whole by the product
    grad_input(&mut dhf, &dlogits, w.head, d, vocab, false);
    prof.mark("b.head_x");
    drop(dlogits);
    let mut dx = uninit(n * d); // written whole (not accumulated)
    let (dg, db) = layer_norm::backward(&x, w.ln_f.0, &dhf, d, &mut dx, false);
    prof.mark("b.lnf");
    rev.push(db);
    rev.push(dg);
    drop(x);
    let mut scratch = dhf; // (n, d), reused for each block's input gradients
    for (blk, s) in w.blocks.iter().zip(saved).rev() {
        // x2 = x1 + mask * (g @ Wm + bm)
        let dm = match &s.mlp_mask {
            Some(m) => {
                let mut dm = dx.clone();
                mul_in_place(&mut dm, m);
                Some(dm)
            }
            None => None,
        };
        let dm_ref = dm.as_deref().unwrap_or(&dx);
        let d_mlp_w = grad_weight(&s.g, dm_ref, hidden, d);
        prof.mark("b.mlp_w");
        let d_mlp_b = column_sums(dm_ref, d);
        prof.mark("b.mlp_b");
        let mut du = s.g; // reuse the GELU buffer for its gradient
        grad_input(&mut du, dm_ref, blk.mlp_proj.0, hidden, d, false);
        prof.mark("b.mlp_x");
        drop(dm);
        // du *= gelu'(u), with the bias gradient's column sums in the same
        // pass (fixed row blocks, added in order).
        let rows = n.div_ceil(ROW_BLOCKS).max(1) * hidden;
        let partials: Vec<Vec<f32>> = du
            .par_chunks_mut(rows)
            .zip(s.slope.par_chunks(rows))
            .map(|(du, slope)| {
                let mut sums = vec![0f32; hidden];
                for (du, m) in du.chunks_exact_mut(hidden).zip(slope.chunks_exact(hidden)) {
                    vector::gelu_backward_row(du, m, &mut sums);
                }
                sums
            })
            .collect();
        let d_fc_b = add_partials(partials, hidden);
        prof.mark("b.gelu");
        drop(s.slope);
        let d_fc_w = grad_weight(&s.h2, &du, d, hidden);
        prof.mark("b.fc_w");
        grad_input(&mut scratch, &du, blk.fc.0, d, hidden, false);
        prof.mark("b.fc_x");
        drop(du);
        let (d_ln2_g, d_ln2_b) = layer_norm::backward(&s.x1, blk.ln2.0, &scratch, d, &mut dx, true);
        prof.mark("b.ln2");
        // x1 = x_in + mask * (y @ Wp + bp)
        let da = match &s.attn_mask {
            Some(m) => {
                let mut da = dx.clone();
                mul_in_place(&mut da, m);
                Some(da)
            }
            None => None,
        };
        let da_ref = da.as_deref().unwrap_or(&dx);
        let d_proj_w = grad_weight(&s.y, da_ref, d, d);
        prof.mark("b.proj_w");
        let d_proj_b = column_sums(da_ref, d);
        prof.mark("b.proj_b");
        grad_input(&mut scratch, da_ref, blk.proj.0, d, d, false);
        prof.mark("b.proj_x");
        drop(da);
        let dqkv = causal_attention::backward(
            &s.qkv,
            &s.y,
            &scratch,
            causal_attention::Probs::Kept {
                probs: &s.kept.probs,
                inv: &s.kept.inv,
            },
            batch,
            attn_dims,
        );
        drop(s.kept);
        prof.mark("b.attn");
        let d_qkv_w = grad_weight(&s.h1, &dqkv, d, 3 * d);
        prof.mark("b.qkv_w");
        let d_qkv_b = column_sums(&dqkv, 3 * d);
        prof.mark("b.qkv_b");
        grad_input(&mut scratch, &dqkv, blk.qkv.0, d, 3 * d, false);
        prof.mark("b.qkv_x");
        drop(dqkv);
        let (d_ln1_g, d_ln1_b) =
            layer_norm::backward(&s.x_in, blk.ln1.0, &scratch, d, &mut dx, true);
        prof.mark("b.ln1");
        rev.extend([
            d_mlp_b, d_mlp_w, d_fc_b, d_fc_w, d_ln2_b, d_ln2_g, d_proj_b, d_proj_w, d_qkv_b,
            d_qkv_w, d_ln1_b, d_ln1_g,
        ]);
    }
    if let Some(m) = &emb_mask {
        mul_in_place(&mut dx, m);
    }
    let mut d_pos = vec![0f32; w.pos_emb.len()];
    scatter_rows(&mut d_pos, &dx, d, |r| r % t);
    let mut d_tok = vec![0f32; w.tok_emb.len()];
    scatter_rows(&mut d_tok, &dx, d, |r| ids[r] as usize);
    prof.mark("b.emb");
    rev.push(d_pos);
    rev.push(d_tok);
    rev.reverse();
    prof.report();
    (loss, rev)
}

// Tested against the autograd paths in `train/step_equivalence.rs`.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_into_transposes() {
        for (rows, cols) in [(1, 1), (3, 17), (16, 16), (33, 5), (40, 70)] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut dst = vec![0f32; rows * cols];
            transpose_into(&mut dst, &src, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(dst[c * rows + r], src[r * cols + c], "{rows}x{cols}");
                }
            }
        }
    }

    /// Both orientations of the weight gradient give the plain sums.
    #[test]
    fn grad_weight_matches_the_plain_product() {
        for (rows, i, o) in [(7, 5, 3), (9, 3, 5), (33, 40, 17)] {
            let x: Vec<f32> = (0..rows * i)
                .map(|v| ((v * 37 % 11) as f32 - 5.0) / 4.0)
                .collect();
            let dy: Vec<f32> = (0..rows * o)
                .map(|v| ((v * 13 % 7) as f32 - 3.0) / 2.0)
                .collect();
            let dw = grad_weight(&x, &dy, i, o);
            for a in 0..i {
                for b in 0..o {
                    let plain: f32 = (0..rows).map(|r| x[r * i + a] * dy[r * o + b]).sum();
                    assert!((dw[a * o + b] - plain).abs() < 1e-4 * (1.0 + plain.abs()));
                }
            }
        }
    }
}
