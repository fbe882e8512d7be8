//! Fused causal multi-head self-attention, flash-attention style, on the CPU.
//!
//! Input: the QKV projection `(b * t, 3 d)` as the model computes it (the
//! columns of a row are `(3, heads, head_dim)`: all query heads, then all
//! keys, then all values). Output: the heads' results side by side,
//! `(b * t, d)`, ready for the output projection. No permuted copies either
//! way.
//!
//! Each (sequence, head) pair is one parallel task. A task walks its queries
//! in blocks of `block` rows; a query block only meets the key blocks up to
//! and including the diagonal one (the masked upper triangle is never
//! computed), so a causal head costs about half of the plain
//! `softmax(q k^T) v`. Per row, the forward keeps the log-sum-exp of the
//! scaled scores; the candle op's backward recomputes each block's
//! probabilities from it (`p = exp(scale * q.k - lse)`). The fused training
//! step instead keeps the forward's exponentials `e = exp(scale q.k - max)`
//! of every block and one `1 / sum(e)` per row (the probability is their
//! product), half a `(t, t)` matrix per head.
//!
//! Where the CPU has AVX-512 or AVX2 the block products are the kernels of
//! `attention_kernels`, which keep a block's scores transposed (a vector
//! holds 16 queries), read q and dy in place (as small per-block panels), k
//! and v from per-task contiguous copies, write the gradients of q, k, v in
//! place in the QKV layout, and fold the softmax's and the score gradient's
//! element passes into the products; elsewhere they go through `gemm`
//! single-threaded inside a task, on contiguous copies of a head's q, k, v. Either way a task's arithmetic and its
//! order do not depend on the number of threads, so the results are
//! bit-stable for any thread count.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::attention_kernels::{Causal, Epilogue, Kernels};
use super::{f32_slice, vector};

/// Query rows per block: big enough for efficient block products, small
/// enough that the diagonal blocks (computed whole, then masked) waste little
/// (at t = 256: 56% of the full square instead of 50%). Measured per step
/// at 1 thread: 32 beat 16, 48, 64 and 128, at context 256 and 1,024.
pub const BLOCK: usize = 32;

/// Causal self-attention of `qkv` `(batch * t, 3 d)` with `heads` heads:
/// `softmax(q k^T / sqrt(head_dim) + causal mask) v` per sequence and head,
/// returned as `(batch * t, d)`. Differentiable in `qkv`.
pub fn causal_attention(qkv: &Tensor, batch: usize, heads: usize) -> Result<Tensor> {
    causal_attention_blocked(qkv, batch, heads, BLOCK)
}

/// [`causal_attention`] with a chosen query block size (tests use small
/// ones to cross many block boundaries).
pub fn causal_attention_blocked(
    qkv: &Tensor,
    batch: usize,
    heads: usize,
    block: usize,
) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1(CausalAttention {
        batch,
        heads,
        block: block.max(1),
        lse: Mutex::new(None),
    })
}

struct CausalAttention {
    batch: usize,
    heads: usize,
    block: usize,
    /// The forward's per-row log-sum-exp, `(batch, heads, t)`, for the backward.
    lse: Mutex<Option<Arc<Vec<f32>>>>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Dims {
    t: usize,
    d: usize,
    heads: usize,
    hd: usize,
    block: usize,
    scale: f32,
    /// The block kernels (where the CPU has AVX-512 or AVX2) instead of
    /// `gemm`.
    kernels: Option<Kernels>,
}

fn dims(l: &Layout, batch: usize, heads: usize, block: usize) -> Result<Dims> {
    match l.dims() {
        [rows, width] => dims_of(*rows, *width, batch, heads, block),
        dims => bail!("causal_attention: expected qkv of shape (b * t, 3 d), got {dims:?}"),
    }
}

/// The attention's sizes for qkv `(rows, width)`, checked.
pub(super) fn dims_of(
    rows: usize,
    width: usize,
    batch: usize,
    heads: usize,
    block: usize,
) -> Result<Dims> {
    let d = width / 3;
    if width % 3 != 0 || heads == 0 || d % heads != 0 || d == 0 {
        bail!(
            "causal_attention: width {width} is not 3 x d_model with d_model a multiple of {heads} heads"
        );
    }
    if batch == 0 || rows % batch != 0 {
        bail!("causal_attention: {rows} rows do not split into {batch} sequences");
    }
    let hd = d / heads;
    Ok(Dims {
        t: rows / batch,
        d,
        heads,
        hd,
        block,
        scale: 1.0 / (hd as f32).sqrt(),
        kernels: Kernels::detect(),
    })
}

/// A pointer that parallel tasks may share: each writes its own disjoint
/// (strided) part of the buffer behind it.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: the tasks write disjoint elements (one head of one sequence each).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}
impl Shared {
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers stay inside the buffer.
        unsafe { self.0.add(offset) }
    }
}

/// `dst (m x n) = [dst +] lhs (m x k) @ rhs (k x n)`, each matrix given as
/// a pointer, a row stride and a column stride (in elements), single-threaded.
///
/// # Safety
/// Every addressed element must be inside its buffer; `dst` must not
/// overlap the operands.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn mm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): (*const f32, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `out` (m, n) = S = Q_blk K[..n]^T for the query rows i0..i0 + m of a
/// head, with q (t, hd) row-major and K^T stored (hd, t): the forward's
/// scores, and the backward's when it recomputes the probabilities.
///
/// # Safety
/// `q` and `kt` point at a head's (t, hd) and (hd, t) matrices, and
/// i0 + m <= t, n <= t.
#[inline]
unsafe fn scores(
    out: &mut [f32],
    q: *const f32,
    kt: *const f32,
    (i0, m, n): (usize, usize, usize),
    hd: usize,
    t: usize,
) {
    debug_assert!(out.len() >= m * n && i0 + m <= t && n <= t);
    unsafe {
        mm(
            (m, n, hd),
            out.as_mut_ptr(),
            n,
            false,
            (q.add(i0 * hd), hd, 1),
            (kt, t, 1),
        )
    };
}

/// The query blocks of a head: (first row, rows, keys seen = first + rows).
fn query_blocks(t: usize, block: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..t)
        .step_by(block)
        .map(move |i0| (i0, block.min(t - i0), i0 + block.min(t - i0)))
}

/// The forward pass on `x` = qkv `(batch * t, 3 d)`: returns the output
/// `(batch * t, d)` and the per-row log-sum-exp `(batch, heads, t)`.
pub(super) fn forward(x: &[f32], batch: usize, dm: Dims) -> (Vec<f32>, Vec<f32>) {
    let (y, lse, _) = forward_inner(x, batch, dm, false);
    (y, lse)
}

/// Floats of one (sequence, head)'s kept probabilities: its query blocks'
/// `rows x keys seen`, one after the other.
pub(super) fn probs_per_task(dm: Dims) -> usize {
    query_blocks(dm.t, dm.block).map(|(_, m, n)| m * n).sum()
}

/// What the forward keeps for [`backward`] instead of recomputing the
/// probabilities (one block product and one `exp` per score fewer, for
/// `b * heads * t^2 / 2` floats kept): per (sequence, head) task,
/// [`probs_per_task`] floats `e` (its query blocks' `rows x keys seen`, one
/// after the other, zero where the causal mask hides a key; each block
/// transposed, `(keys seen, rows)`, on the kernels' path), and per row
/// `inv`: the probability of row `i`'s key `j` is `e[i][j] * inv[i]`.
pub(super) struct Kept {
    pub probs: Vec<f32>,
    pub inv: Vec<f32>,
}

/// How [`backward`] gets the probabilities.
#[derive(Clone, Copy)]
pub(super) enum Probs<'a> {
    /// From the forward's [`Kept`].
    Kept { probs: &'a [f32], inv: &'a [f32] },
    /// Recomputed from the forward's per-row log-sum-exp `(batch, heads, t)`.
    Recompute { lse: &'a [f32] },
}

/// [`forward`] that also returns what the backward needs instead of
/// recomputing the probabilities.
pub(super) fn forward_keeping_probs(
    x: &[f32],
    batch: usize,
    dm: Dims,
) -> (Vec<f32>, Vec<f32>, Kept) {
    let (y, lse, kept) = forward_inner(x, batch, dm, true);
    (y, lse, kept)
}

fn forward_inner(x: &[f32], batch: usize, dm: Dims, keep: bool) -> (Vec<f32>, Vec<f32>, Kept) {
    let Dims { t, d, heads, .. } = dm;
    // Written whole: every head's columns of every row.
    let mut y = super::uninit(batch * t * d);
    let mut lse = vec![0f32; batch * heads * t];
    let mut inv = vec![0f32; batch * heads * t];
    let per_task = probs_per_task(dm);
    // Every kept float is written (the block product, then the mask).
    let mut probs = if keep {
        super::uninit(batch * heads * per_task)
    } else {
        Vec::new()
    };
    let out = Shared(y.as_mut_ptr());
    let kept = Shared(probs.as_mut_ptr());
    lse.par_chunks_mut(t.max(1))
        .zip(inv.par_chunks_mut(t.max(1)))
        .enumerate()
        .for_each(|(task, (lse, inv))| {
            // SAFETY: this task's own blocks of `probs`.
            let probs = keep.then(|| unsafe {
                std::slice::from_raw_parts_mut(kept.at(task * per_task), per_task)
            });
            forward_task(x, task, dm, out, probs, lse, inv);
        });
    (y, lse, Kept { probs, inv })
}

/// One (sequence, head) task of the forward: writes its columns of `out`,
/// its rows' `lse` and `inv`, and its blocks' exponentials into `kept`
/// (or a scratch block when none): with the block kernels each block
/// transposed, `(keys seen, rows)`, through `gemm` as `(rows, keys seen)`.
fn forward_task(
    x: &[f32],
    task: usize,
    dm: Dims,
    out: Shared,
    mut kept: Option<&mut [f32]>,
    lse: &mut [f32],
    inv: &mut [f32],
) {
    let Dims {
        t,
        d,
        heads,
        hd,
        block,
        scale,
        kernels,
    } = dm;
    let fast = kernels.is_some();
    let rs = 3 * d;
    let (bi, h) = (task / heads, task % heads);
    let head = bi * t * rs + h * hd;
    // gemm reads contiguous copies of q, k^T and v (it packs rows `3 d`
    // apart much more slowly).
    let (qh, kth, vh) = if fast {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        (
            gather(x, head, t, d, hd),
            gather_transposed(x, head + d, t, d, hd),
            gather(x, head + 2 * d, t, d, hd),
        )
    };
    // The kernels read k and v from contiguous copies (every query block
    // sweeps them; rows `3 d` apart cost 8% more in the block products than
    // the copies), q (as a per-block transposed panel) in place.
    let (kc, vc) = if fast {
        (
            gather(x, head + d, t, d, hd),
            gather(x, head + 2 * d, t, d, hd),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let y = out.at(bi * t * d + h * hd);
    let bmax = block.min(t);
    let mut scratch = if kept.is_some() {
        Vec::new()
    } else {
        vec![0f32; bmax * t]
    };
    let (mut panel, mut colmax, mut sums) = if fast {
        (vec![0f32; hd * bmax], vec![0f32; bmax], vec![0f32; bmax])
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let mut offset = 0;
    for (i0, m, n) in query_blocks(t, block) {
        let s: &mut [f32] = match kept.as_deref_mut() {
            Some(all) => {
                offset += m * n;
                &mut all[offset - m * n..offset]
            }
            None => &mut scratch[..m * n],
        };
        if let Some(kernels) = kernels {
            transpose_rows(kernels, &mut panel, &x[head + i0 * rs..], m, rs, hd);
            colmax[..m].fill(f32::NEG_INFINITY);
            // SAFETY: `kernels` run here; rows 0..n of k and v and
            // i0..i0 + m of y are inside this sequence; the panel, `colmax`,
            // `sums` and `inv[i0..]` have m columns.
            unsafe {
                kernels.cols(
                    (n, m, hd),
                    i0,
                    kc.as_ptr(),
                    hd,
                    panel.as_ptr(),
                    s.as_mut_ptr(),
                    Epilogue::ScoresMax {
                        scale,
                        colmax: colmax.as_mut_ptr(),
                    },
                );
                kernels.exp_cols(
                    s.as_mut_ptr(),
                    (n, m),
                    i0,
                    colmax.as_ptr(),
                    sums.as_mut_ptr(),
                );
                for i in 0..m {
                    inv[i0 + i] = 1.0 / sums[i];
                    lse[i0 + i] = colmax[i] + sums[i].ln();
                }
                // Y_blk = diag(inv) P V[..n], P read from its transpose.
                kernels.rows(
                    (m, n, hd),
                    Causal::QueryRows { i0 },
                    (s.as_ptr(), 1, m),
                    vc.as_ptr(),
                    hd,
                    y.add(i0 * d),
                    d,
                    0,
                    inv[i0..].as_ptr(),
                );
            }
        } else {
            // SAFETY: rows i0..i0 + m of q and 0..n of k and v are inside
            // this sequence; y's rows likewise.
            unsafe { scores(s, qh.as_ptr(), kth.as_ptr(), (i0, m, n), hd, t) };
            for (r, row) in s.chunks_exact_mut(n).enumerate() {
                let len = i0 + r + 1;
                let (seen, masked) = row.split_at_mut(len);
                let max = vector::max(seen);
                vector::exp_affine(seen, scale, scale * max);
                let sum = vector::sum(seen);
                let inv_sum = 1.0 / sum;
                seen.iter_mut().for_each(|p| *p *= inv_sum);
                masked.fill(0.0);
                inv[i0 + r] = 1.0;
                lse[i0 + r] = scale * max + sum.ln();
            }
            // SAFETY: as above.
            unsafe {
                // Y_blk = P V[..n].
                mm(
                    (m, hd, n),
                    y.add(i0 * d),
                    d,
                    false,
                    (s.as_ptr(), n, 1),
                    (vh.as_ptr(), hd, 1),
                );
            }
        }
    }
}

/// `panel (w, m)` = the first `w` columns of `m` rows at stride `rs` of
/// `src`, transposed: a block's q or dy as the kernels' vector operand
/// (by the kernels' own transpose where the sizes are multiples of 8).
fn transpose_rows(kernels: Kernels, panel: &mut [f32], src: &[f32], m: usize, rs: usize, w: usize) {
    if m.is_multiple_of(8) && w.is_multiple_of(8) {
        // SAFETY: `kernels` run here; the transpose checks the sizes.
        return unsafe { kernels.transpose(panel, src, (m, rs, w)) };
    }
    for i in 0..m {
        let row = &src[i * rs..i * rs + w];
        for (c, &v) in row.iter().enumerate() {
            panel[c * m + i] = v;
        }
    }
}

impl CustomOp1 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dm = dims(l, self.batch, self.heads, self.block)?;
        let x = f32_slice(s, l, "causal_attention")?;
        let (y, lse) = forward(x, self.batch, dm);
        *self.lse.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(lse));
        Ok((CpuStorage::F32(y), Shape::from((self.batch * dm.t, dm.d))))
    }

    fn bwd(&self, qkv: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let lse = self.lse.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(lse) = lse else {
            bail!("causal_attention: backward without a forward");
        };
        let op = CausalAttentionBackward {
            batch: self.batch,
            heads: self.heads,
            block: self.block,
            lse,
        };
        Ok(Some(qkv.apply_op3_no_bwd(y, &grad.contiguous()?, &op)?))
    }
}

/// The backward pass: inputs (qkv, y, dy), output d qkv. Per (sequence,
/// head) and query block, with `D_i = dy_i . y_i`:
/// `P = exp(scale S - lse)`, `dV += P^T dY`, `dP = dY V^T`,
/// `dS = scale P (dP - D)`, `dQ = dS K`, `dK += dS^T Q`.
struct CausalAttentionBackward {
    batch: usize,
    heads: usize,
    block: usize,
    lse: Arc<Vec<f32>>,
}

/// The backward pass: qkv `x`, output `yv`, its gradient `dy` and the
/// probabilities' source `probs`; returns d qkv.
pub(super) fn backward(
    x: &[f32],
    yv: &[f32],
    dy: &[f32],
    probs: Probs,
    batch: usize,
    dm: Dims,
) -> Vec<f32> {
    let Dims {
        t, d, heads, hd, ..
    } = dm;
    let rs = 3 * d;
    let rows = batch * heads * t;
    match probs {
        Probs::Kept { probs, inv } => {
            assert_eq!(
                probs.len(),
                batch * heads * probs_per_task(dm),
                "attention backward: kept probabilities"
            );
            assert_eq!(inv.len(), rows, "attention backward: kept sums");
        }
        Probs::Recompute { lse } => assert_eq!(lse.len(), rows, "attention backward: lse"),
    }
    // D = dy . y per row and head, `(batch, heads, t)`, in one sequential
    // pass over both (per task, the head's 64-float pieces of rows 1 KB
    // apart came from memory four times over).
    let mut dd_all = vec![0f32; rows];
    dd_all
        .par_chunks_mut(heads * t)
        .enumerate()
        .for_each(|(bi, dd)| {
            for i in 0..t {
                let r = (bi * t + i) * d;
                for h in 0..heads {
                    let c = r + h * hd;
                    dd[h * t + i] = vector::dot(&dy[c..c + hd], &yv[c..c + hd]);
                }
            }
        });
    // Written whole: every head's q, k and v columns of every row.
    let mut dqkv = super::uninit(batch * t * rs);
    let out = Shared(dqkv.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each(|task| {
        let dd = &dd_all[task * t..(task + 1) * t];
        if let Some(kernels) = dm.kernels {
            backward_task_fast(kernels, x, dy, dd, probs, task, dm, out);
        } else {
            backward_task_gemm(x, dy, dd, probs, task, dm, out);
        }
    });
    dqkv
}

/// The kept probabilities of a task's query block `(i0, m, n)` (`offset`:
/// the block's start in the task's kept floats) and their rows' factors.
fn kept_block<'a>(
    probs: &'a [f32],
    inv: &'a [f32],
    task: usize,
    dm: Dims,
    (i0, m, n): (usize, usize, usize),
    offset: usize,
) -> (&'a [f32], &'a [f32]) {
    let start = task * probs_per_task(dm) + offset;
    (
        &probs[start..start + m * n],
        &inv[task * dm.t + i0..task * dm.t + i0 + m],
    )
}

/// One (sequence, head) task of the backward with the block kernels:
/// writes this head's q, k and v columns of `out` = d qkv in place. Per
/// query block, with `P^T` the block's probabilities transposed:
/// `dV[..n] (+)= P^T dY_blk`, `dS^T = scale P^T (V dY_blk^T - D)`,
/// `dQ_blk = (dS^T)^T K[..n]`, `dK[..n] (+)= dS^T Q_blk`.
#[allow(clippy::too_many_arguments)]
fn backward_task_fast(
    kernels: Kernels,
    x: &[f32],
    dy: &[f32],
    dd: &[f32],
    probs: Probs,
    task: usize,
    dm: Dims,
    out: Shared,
) {
    let Dims {
        t,
        d,
        heads,
        hd,
        block,
        scale,
        ..
    } = dm;
    let rs = 3 * d;
    let (bi, h) = (task / heads, task % heads);
    let head = bi * t * rs + h * hd;
    let bmax = block.min(t);
    let mut scratch = match probs {
        Probs::Kept { .. } => Vec::new(),
        Probs::Recompute { .. } => vec![0f32; bmax * t],
    };
    let ones = vec![1f32; bmax];
    // Each block's `n x m` written by its `cols` before any read.
    let mut ds = super::uninit(bmax * t);
    let mut panel = vec![0f32; hd * bmax];
    let mut dys = vec![0f32; bmax * hd];
    let mut coef = vec![0f32; bmax];
    // k and v as contiguous copies, as in the forward.
    let (kc, vc) = (
        gather(x, head + d, t, d, hd),
        gather(x, head + 2 * d, t, d, hd),
    );
    // dK and dV are summed over the query blocks in contiguous copies,
    // written into the QKV layout at the end: every block adds into all
    // their rows so far, and rows `3 d` apart (3 KB at d = 256) share a few
    // cache sets (the AVX2 backward at context 1,024: ~0.86x the time).
    // Written whole: block i0 writes rows i0.. before later blocks add.
    let mut dkc = super::uninit(t * hd);
    let mut dvc = super::uninit(t * hd);
    let dq = out.at(head);
    let (dk, dv) = (dkc.as_mut_ptr(), dvc.as_mut_ptr());
    let mut offset = 0;
    for (i0, m, n) in query_blocks(t, block) {
        let (p, inv): (&[f32], &[f32]) = match probs {
            Probs::Kept { probs, inv } => kept_block(probs, inv, task, dm, (i0, m, n), offset),
            Probs::Recompute { lse } => {
                let p = &mut scratch[..m * n];
                transpose_rows(kernels, &mut panel, &x[head + i0 * rs..], m, rs, hd);
                // SAFETY: `kernels` run here; rows 0..n of k are
                // inside this sequence, the panel and lse[i0..] have m
                // columns.
                unsafe {
                    kernels.cols(
                        (n, m, hd),
                        i0,
                        kc.as_ptr(),
                        hd,
                        panel.as_ptr(),
                        p.as_mut_ptr(),
                        Epilogue::Scores { scale },
                    );
                    kernels.exp_cols(
                        p.as_mut_ptr(),
                        (n, m),
                        i0,
                        lse[task * t + i0..].as_ptr(),
                        std::ptr::null_mut(),
                    );
                }
                (p, &ones[..m])
            }
        };
        offset += m * n;
        let dy_blk = &dy[(bi * t + i0) * d + h * hd..];
        for (i, row) in dys.chunks_exact_mut(hd).take(m).enumerate() {
            for (o, &g) in row.iter_mut().zip(&dy_blk[i * d..i * d + hd]) {
                *o = g * inv[i];
            }
            coef[i] = scale * inv[i];
        }
        transpose_rows(kernels, &mut panel, dy_blk, m, d, hd);
        // SAFETY: `kernels` run here; every row addressed (i0..i0 + m of q,
        // dq and dy, 0..n of k, v, dk and dv) is inside this sequence, the
        // output columns are this head's own, and `coef`, `dd[i0..]` and
        // the panel have m columns.
        unsafe {
            // dV[..n] (+)= P^T dY_blk: rows from i0 on are new.
            kernels.rows(
                (n, m, hd),
                Causal::KeyRows { i0 },
                (p.as_ptr(), m, 1),
                dys.as_ptr(),
                hd,
                dv,
                hd,
                i0,
                std::ptr::null(),
            );
            // dS^T = scale P^T (V[..n] dY_blk^T - D).
            kernels.cols(
                (n, m, hd),
                i0,
                vc.as_ptr(),
                hd,
                panel.as_ptr(),
                ds.as_mut_ptr(),
                Epilogue::ScoreGrad {
                    e: p.as_ptr(),
                    coef: coef.as_ptr(),
                    dd: dd[i0..].as_ptr(),
                },
            );
            // dQ_blk = dS K[..n].
            kernels.rows(
                (m, n, hd),
                Causal::QueryRows { i0 },
                (ds.as_ptr(), 1, m),
                kc.as_ptr(),
                hd,
                dq.add(i0 * rs),
                rs,
                0,
                std::ptr::null(),
            );
            // dK[..n] (+)= dS^T Q_blk.
            kernels.rows(
                (n, m, hd),
                Causal::KeyRows { i0 },
                (ds.as_ptr(), m, 1),
                x[head + i0 * rs..].as_ptr(),
                rs,
                dk,
                hd,
                i0,
                std::ptr::null(),
            );
        }
    }
    for (i, (k, v)) in dkc.chunks_exact(hd).zip(dvc.chunks_exact(hd)).enumerate() {
        // SAFETY: row i of this sequence, this head's k and v columns.
        unsafe {
            std::ptr::copy_nonoverlapping(k.as_ptr(), out.at(head + d + i * rs), hd);
            std::ptr::copy_nonoverlapping(v.as_ptr(), out.at(head + 2 * d + i * rs), hd);
        }
    }
}

/// [`backward_task_fast`] through `gemm`, on contiguous copies of the
/// head's q, k, v^T and dy.
fn backward_task_gemm(
    x: &[f32],
    dy: &[f32],
    dd: &[f32],
    probs: Probs,
    task: usize,
    dm: Dims,
    out: Shared,
) {
    let Dims {
        t,
        d,
        heads,
        hd,
        block,
        scale,
        ..
    } = dm;
    let rs = 3 * d;
    let (bi, h) = (task / heads, task % heads);
    let head = bi * t * rs + h * hd;
    // K^T only for recomputing the probabilities.
    let (qh, kh, kth, vth) = (
        gather(x, head, t, d, hd),
        gather(x, head + d, t, d, hd),
        match probs {
            Probs::Kept { .. } => Vec::new(),
            Probs::Recompute { .. } => gather_transposed(x, head + d, t, d, hd),
        },
        gather_transposed(x, head + 2 * d, t, d, hd),
    );
    let (q, k, kt, vt) = (qh.as_ptr(), kh.as_ptr(), kth.as_ptr(), vth.as_ptr());
    let mut douth = vec![0f32; t * hd];
    for (i, r) in douth.chunks_exact_mut(hd).enumerate() {
        r.copy_from_slice(&dy[(bi * t + i) * d + h * hd..][..hd]);
    }
    let dout = &douth[..];
    let (mut dqh, mut dkh, mut dvh) = (vec![0f32; t * hd], vec![0f32; t * hd], vec![0f32; t * hd]);
    let (dq, dk, dv) = (dqh.as_mut_ptr(), dkh.as_mut_ptr(), dvh.as_mut_ptr());
    let bmax = block.min(t);
    let mut scratch = match probs {
        Probs::Kept { .. } => Vec::new(),
        Probs::Recompute { .. } => vec![0f32; bmax * t],
    };
    let ones = vec![1f32; bmax];
    let mut dscores = vec![0f32; bmax * t];
    let mut dys = vec![0f32; bmax * hd];
    let mut offset = 0;
    for (i0, m, n) in query_blocks(t, block) {
        let ds = &mut dscores[..m * n];
        // SAFETY: all rows addressed are inside this sequence.
        let score = |p: &mut [f32]| unsafe { scores(p, q, kt, (i0, m, n), hd, t) };
        let (p, inv): (&[f32], &[f32]) = match probs {
            Probs::Kept { probs, inv } => kept_block(probs, inv, task, dm, (i0, m, n), offset),
            Probs::Recompute { lse } => {
                let p = &mut scratch[..m * n];
                score(p);
                for (r, row) in p.chunks_exact_mut(n).enumerate() {
                    let len = i0 + r + 1;
                    let (seen, masked) = row.split_at_mut(len);
                    vector::exp_affine(seen, scale, lse[task * t + i0 + r]);
                    masked.fill(0.0);
                }
                (p, &ones[..m])
            }
        };
        offset += m * n;
        for (r, row) in dys.chunks_exact_mut(hd).take(m).enumerate() {
            for (o, &g) in row.iter_mut().zip(&dout[(i0 + r) * hd..(i0 + r + 1) * hd]) {
                *o = g * inv[r];
            }
        }
        // SAFETY: as above.
        unsafe {
            // dV[..n] += P^T dY_blk (P^T's row j is column j of P).
            mm(
                (n, hd, m),
                dv,
                hd,
                true,
                (p.as_ptr(), 1, n),
                (dys.as_ptr(), hd, 1),
            );
            // dP = dY_blk V[..n]^T.
            mm(
                (m, n, hd),
                ds.as_mut_ptr(),
                n,
                false,
                (dout[i0 * hd..].as_ptr(), hd, 1),
                (vt, t, 1),
            );
        }
        for (r, (dsr, pr)) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)).enumerate() {
            let (di, c) = (dd[i0 + r], scale * inv[r]);
            for (g, &p) in dsr.iter_mut().zip(pr) {
                *g = p * c * (*g - di);
            }
        }
        // SAFETY: as above.
        unsafe {
            // dQ_blk = dS K[..n].
            mm(
                (m, hd, n),
                dq.add(i0 * hd),
                hd,
                false,
                (ds.as_ptr(), n, 1),
                (k, hd, 1),
            );
            // dK[..n] += dS^T Q_blk.
            mm(
                (n, hd, m),
                dk,
                hd,
                true,
                (ds.as_ptr(), 1, n),
                (q.add(i0 * hd), hd, 1),
            );
        }
    }
    for (off, m) in [(0, &dqh), (d, &dkh), (2 * d, &dvh)] {
        for (i, r) in m.chunks_exact(hd).enumerate() {
            // SAFETY: row i of this head's q, k or v columns, inside dqkv.
            unsafe { std::ptr::copy_nonoverlapping(r.as_ptr(), out.at(head + off + i * rs), hd) };
        }
    }
}

/// One head's rows `(t, hd)` of q, k or v (`head` = offset of its first
/// element in `x`) as a contiguous matrix (the block products pack them much
/// faster than rows `3 d` apart).
fn gather(x: &[f32], head: usize, t: usize, d: usize, hd: usize) -> Vec<f32> {
    let mut m = super::uninit(t * hd); // written whole, row by row
    for (i, r) in m.chunks_exact_mut(hd).enumerate() {
        r.copy_from_slice(&x[head + i * 3 * d..][..hd]);
    }
    m
}

/// [`gather`] transposed: `(hd, t)`, row `c` holding column `c` of every
/// position. As the right operand of `A @ M^T` it needs no packing (gemm
/// packs a row-major `M` read transposed, which made `Q K^T` and `dY V^T`
/// a third slower than the other block products).
fn gather_transposed(x: &[f32], head: usize, t: usize, d: usize, hd: usize) -> Vec<f32> {
    let mut m = vec![0f32; t * hd];
    // 16 x 16 tiles: 16 positions' 16 columns are read as 16 short rows and
    // written as 16 short rows (a cache line each) of the transpose; walking
    // whole source rows instead writes `hd` lines `t` floats apart, which
    // alias in the L1 cache when `t` is a multiple of 1,024.
    const TILE: usize = 16;
    let mut tile = [[0f32; TILE]; TILE];
    for j0 in (0..t).step_by(TILE) {
        let rows = TILE.min(t - j0);
        for c0 in (0..hd).step_by(TILE) {
            let cols = TILE.min(hd - c0);
            for (r, tr) in tile.iter_mut().enumerate().take(rows) {
                tr[..cols].copy_from_slice(&x[head + (j0 + r) * 3 * d + c0..][..cols]);
            }
            for c in 0..cols {
                let dst = &mut m[(c0 + c) * t + j0..][..rows];
                for (r, v) in dst.iter_mut().enumerate() {
                    *v = tile[r][c];
                }
            }
        }
    }
    m
}

impl CustomOp3 for CausalAttentionBackward {
    fn name(&self) -> &'static str {
        "causal-attention-backward"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dm = dims(ql, self.batch, self.heads, self.block)?;
        let x = f32_slice(qs, ql, "causal_attention backward")?;
        let yv = f32_slice(ys, yl, "causal_attention backward")?;
        let dy = f32_slice(gs, gl, "causal_attention backward")?;
        let rows = self.batch * dm.t;
        if yv.len() != rows * dm.d || dy.len() != rows * dm.d || self.lse.len() != rows * dm.heads {
            bail!("causal_attention backward: output, gradient or statistics do not fit");
        }
        let dqkv = backward(
            x,
            yv,
            dy,
            Probs::Recompute { lse: &self.lse },
            self.batch,
            dm,
        );
        Ok((CpuStorage::F32(dqkv), ql.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ops::causal_softmax;
    use crate::train::ops::testing::{check_gradients, max_diff, on_threads, tensor};
    use candle_core::{Device, Var};

    /// The plain composed path the model used before: permute, q k^T,
    /// causal softmax, times v, permute back.
    fn reference(qkv: &Tensor, b: usize, heads: usize) -> Tensor {
        let (rows, w) = qkv.dims2().unwrap();
        let (t, d) = (rows / b, w / 3);
        let hd = d / heads;
        let qkv = qkv
            .reshape((b, t, 3, heads, hd))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap()
            .contiguous()
            .unwrap();
        let (q, k, v) = (
            qkv.get(0).unwrap(),
            qkv.get(1).unwrap(),
            qkv.get(2).unwrap(),
        );
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        let att = causal_softmax(&scores, 1.0 / (hd as f32).sqrt()).unwrap();
        att.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((b * t, d))
            .unwrap()
    }

    #[test]
    fn matches_the_composed_attention() {
        let (b, t, heads, hd) = (2, 37, 3, 8);
        let qkv = tensor(&[b * t, 3 * heads * hd], 1);
        let expected = reference(&qkv, b, heads);
        for block in [1, 5, 16, 37, 64] {
            let ours = causal_attention_blocked(&qkv, b, heads, block).unwrap();
            let diff = max_diff(&ours, &expected);
            assert!(diff < 2e-6, "block {block}: {diff}");
        }
    }

    #[test]
    fn gradients_match_the_composed_attention() {
        let (b, t, heads, hd) = (2, 29, 2, 8);
        let weights = tensor(&[b * t, heads * hd], 9);
        let qkv = Var::from_tensor(&tensor(&[b * t, 3 * heads * hd], 2)).unwrap();
        let grad_of = |y: Tensor| {
            let grads = y
                .mul(&weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            grads.get(&qkv).unwrap().clone()
        };
        let expected = grad_of(reference(&qkv, b, heads));
        for block in [1, 4, 7, 64] {
            let ours = grad_of(causal_attention_blocked(&qkv, b, heads, block).unwrap());
            let diff = max_diff(&ours, &expected);
            assert!(diff < 1e-5, "block {block}: {diff}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let vars = [Var::from_tensor(&tensor(&[2 * 7, 3 * 2 * 3], 3)).unwrap()];
        check_gradients(&vars, |v| causal_attention_blocked(&v[0], 2, 2, 3).unwrap());
    }

    #[test]
    fn a_query_sees_only_itself_and_earlier_keys() {
        // Changing the last position's q, k and v changes no earlier output.
        let (b, t, heads, hd) = (1, 9, 2, 4);
        let qkv = tensor(&[b * t, 3 * heads * hd], 4);
        let mut moved: Vec<f32> = qkv.flatten_all().unwrap().to_vec1().unwrap();
        let w = 3 * heads * hd;
        moved[(t - 1) * w..].iter_mut().for_each(|x| *x += 1.5);
        let moved = Tensor::from_vec(moved, qkv.shape(), &Device::Cpu).unwrap();
        let a: Vec<Vec<f32>> = causal_attention_blocked(&qkv, b, heads, 4)
            .unwrap()
            .to_vec2()
            .unwrap();
        let c: Vec<Vec<f32>> = causal_attention_blocked(&moved, b, heads, 4)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(a[..t - 1], c[..t - 1]);
        assert_ne!(a[t - 1], c[t - 1]);
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (b, t, heads, hd) = (3, 70, 4, 16);
        let weights = tensor(&[b * t, heads * hd], 5);
        let qkv = Var::from_tensor(&tensor(&[b * t, 3 * heads * hd], 6)).unwrap();
        let run = |threads: usize| {
            on_threads(threads, || {
                let y = causal_attention(&qkv, b, heads).unwrap();
                let g = y
                    .mul(&weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let bits = |t: &Tensor| -> Vec<u32> {
                    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                    v.iter().map(|x| x.to_bits()).collect()
                };
                (bits(&y), bits(g.get(&qkv).unwrap()))
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    /// The backward from the forward's kept probabilities equals the one
    /// that recomputes them (which the tests above check against the
    /// composed attention and finite differences), for any thread count;
    /// each build of the kernels that the CPU runs equals the `gemm` path,
    /// at sizes that leave partial tiles everywhere.
    #[test]
    fn kept_probabilities_give_the_recomputed_gradient() {
        for (b, t, heads, hd, block) in [
            (2, 29, 2, 8, 4),
            (3, 70, 4, 16, 32),
            (1, 64, 1, 8, 64),
            (2, 77, 2, 40, 32),
            (1, 100, 1, 64, 32),
            (1, 53, 2, 3, 7),
        ] {
            let x: Vec<f32> = tensor(&[b * t, 3 * heads * hd], 11)
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let dy: Vec<f32> = tensor(&[b * t, heads * hd], 12)
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let case = format!("b {b} t {t} heads {heads} hd {hd} block {block}");
            let dm = dims_of(b * t, 3 * heads * hd, b, heads, block).unwrap();
            let run = |threads: usize, dm: Dims| {
                on_threads(threads, || {
                    let (y, lse, kept) = forward_keeping_probs(&x, b, dm);
                    assert_eq!(kept.probs.len(), b * heads * probs_per_task(dm));
                    let (y2, lse2) = forward(&x, b, dm);
                    assert_eq!((&y, &lse), (&y2, &lse2), "same forward");
                    let probs = Probs::Kept {
                        probs: &kept.probs,
                        inv: &kept.inv,
                    };
                    let kept = backward(&x, &y, &dy, probs, b, dm);
                    let recomputed = backward(&x, &y, &dy, Probs::Recompute { lse: &lse }, b, dm);
                    (y, kept, recomputed)
                })
            };
            let close = |a: &[f32], b: &[f32], what: &str| {
                for (i, (k, r)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (k - r).abs() < 1e-5 * (1.0 + r.abs()),
                        "{case} {what} [{i}]: {k} vs {r}"
                    );
                }
            };
            let gemm = Dims {
                kernels: None,
                ..dm
            };
            let (y_gemm, kept_gemm, recomputed_gemm) = run(1, gemm);
            close(&kept_gemm, &recomputed_gemm, "gemm: kept vs recomputed");
            for kernels in Kernels::all_available() {
                let dm = Dims {
                    kernels: Some(kernels),
                    ..dm
                };
                let (y, kept, recomputed) = run(1, dm);
                close(
                    &kept,
                    &recomputed,
                    &format!("{kernels:?}: kept vs recomputed"),
                );
                for threads in [2, 3] {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&run(threads, dm).1),
                        bits(&kept),
                        "{case}: {kernels:?}, {threads} threads"
                    );
                }
                close(&y, &y_gemm, &format!("y, {kernels:?} vs gemm"));
                close(&kept, &kept_gemm, &format!("kept, {kernels:?} vs gemm"));
                close(
                    &recomputed,
                    &recomputed_gemm,
                    &format!("recomputed, {kernels:?} vs gemm"),
                );
            }
        }
    }

    /// The kernels' transpose gives the scalar loop's panel, for sizes
    /// that are multiples of 8 (theirs) and others (the loop's).
    #[test]
    fn panels_transpose_rows() {
        for kernels in Kernels::all_available() {
            for (m, rs, w) in [
                (32, 768, 64),
                (8, 8, 8),
                (16, 40, 24),
                (5, 9, 7),
                (32, 256, 64),
            ] {
                let src: Vec<f32> = (0..m * rs).map(|i| i as f32).collect();
                let mut panel = vec![f32::NAN; w * m];
                transpose_rows(kernels, &mut panel, &src, m, rs, w);
                for i in 0..m {
                    for c in 0..w {
                        assert_eq!(
                            panel[c * m + i],
                            src[i * rs + c],
                            "{kernels:?} {m} {rs} {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let qkv = tensor(&[10, 12], 7);
        assert!(
            causal_attention(&qkv, 3, 2).is_err(),
            "10 rows in 3 sequences"
        );
        assert!(causal_attention(&qkv, 2, 3).is_err(), "d = 4 in 3 heads");
        assert!(causal_attention(&tensor(&[10, 11], 7), 2, 1).is_err());
    }
}

/// Timing of the attention alone at the benchmark's shapes, each build of
/// kernels beside the `gemm` path, 1 thread (a tool for work on the
/// kernels): `cargo test --release -p vgmake-stages --lib -- --ignored
/// attention_speed --nocapture`.
#[cfg(test)]
mod speed {
    use super::*;
    use crate::train::ops::fused_step::thread_cpu_seconds;

    #[test]
    #[ignore]
    fn attention_speed() {
        crate::train::memory::tune_allocator();
        for (b, t) in [(4usize, 1024usize), (16, 256)] {
            let (heads, hd) = (4usize, 64usize);
            let d = heads * hd;
            let x: Vec<f32> = (0..b * t * 3 * d)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 200.0)
                .collect();
            let dy: Vec<f32> = (0..b * t * d)
                .map(|i| ((i * 13 % 17) as f32 - 8.0) / 17.0)
                .collect();
            let dims = dims_of(b * t, 3 * d, b, heads, BLOCK).unwrap();
            on_one_thread(|| {
                let builds: Vec<Option<Kernels>> = std::iter::once(None)
                    .chain(Kernels::all_available().into_iter().map(Some))
                    .collect();
                for kernels in builds.iter().chain(&builds).copied() {
                    let dm = Dims { kernels, ..dims };
                    let (mut tf, mut tb) = (Vec::new(), Vec::new());
                    for _ in 0..7 {
                        let t0 = thread_cpu_seconds();
                        let (y, _, kept) = forward_keeping_probs(&x, b, dm);
                        let t1 = thread_cpu_seconds();
                        let probs = Probs::Kept {
                            probs: &kept.probs,
                            inv: &kept.inv,
                        };
                        std::hint::black_box(backward(&x, &y, &dy, probs, b, dm));
                        tf.push(t1 - t0);
                        tb.push(thread_cpu_seconds() - t1);
                    }
                    tf.sort_by(f64::total_cmp);
                    tb.sort_by(f64::total_cmp);
                    eprintln!(
                        "{} b {b} t {t}: forward {:.2} ms, backward {:.2} ms per layer (medians of 7)",
                        kernels.map_or("gemm".to_string(), |k| format!("{k:?}")),
                        tf[3] * 1e3,
                        tb[3] * 1e3
                    );
                }
            });
        }
    }

    fn on_one_thread(f: impl FnOnce() + Send) {
        crate::train::ops::testing::on_threads(1, f)
    }
}
