//! Block products of the fused causal attention, with the element passes of
//! the softmax and of the score gradient folded into them, in two builds:
//! AVX-512 ([`avx512`]) and AVX2 with FMA ([`avx2`], for the CPUs without
//! AVX-512: most laptops, AMD before Zen 4), picked at run time.
//!
//! A query block's scores are kept transposed, `(keys, queries)`: a vector
//! holds 16 (AVX2: 8) queries' scores against one key, so the per-query
//! statistics (maximum, sum, `1 / sum`, `dy . y`) are vectors too, and every
//! product reads its broadcast operand from contiguous floats and its vector
//! operand from rows of q, k, v (in place in the `(rows, 3 d)` QKV layout) or
//! from small per-block panels. Two kernels:
//! - `cols`: `C (n, m) = A (n, k) B (k, m)`, A's rows broadcast (k or v
//!   rows), B a `(head_dim, queries)` panel (q or dy of the block,
//!   transposed), with an epilogue per element: the scaled scores and their
//!   column maxima, or the score gradient `e coef (dP - D)`;
//! - `rows`: `C (r, w) [+]= diag(s) A (r, kk) B (kk, w)` with A given by
//!   any two strides (a block read transposed or not) and B's rows vectors
//!   (v, k, q or dy rows): `P V`, `dS K`, `P^T dY`, `dS^T Q`.
//!
//! Each sum runs over its inner index in order, one fused multiply-add at a
//! time, so a result does not depend on the tile it falls in nor on the
//! thread count (a block is one task's). The two builds agree to rounding,
//! not bit for bit (their `exp` and their tiles' masked lanes differ).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// What `cols` does with each element `x` of its product, row `j` (a
/// key), column `i` (a query of the block, the first being `i0`).
#[derive(Clone, Copy)]
pub enum Epilogue {
    /// `C = scale x`; `colmax[i]` = the maximum of itself and the column's
    /// elements that the causal mask keeps.
    ScoresMax { scale: f32, colmax: *mut f32 },
    /// `C = scale x`.
    Scores { scale: f32 },
    /// `C = e coef[i] (x - dd[i])`, `e` laid out as `C`.
    ScoreGrad {
        e: *const f32,
        coef: *const f32,
        dd: *const f32,
    },
}

/// Which terms of `rows`' sums are zero, `A` being a causal block of
/// the queries from `i0` on.
#[derive(Clone, Copy)]
pub enum Causal {
    /// Row `i` is query `i0 + i` and `p` a key: terms `p > i0 + i` vanish.
    QueryRows { i0: usize },
    /// Row `i` is key `i` and `p` query `i0 + p`: terms `p < i - i0` vanish.
    KeyRows { i0: usize },
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Causal {
    /// The terms `p0..p1` of the sums over `kk` that rows `i..i + rows` of
    /// `rows`' product can have non-zero.
    #[inline]
    fn terms(self, kk: usize, i: usize, rows: usize) -> (usize, usize) {
        match self {
            Causal::QueryRows { i0 } => (0, kk.min(i0 + i + rows)),
            Causal::KeyRows { i0 } => (i.saturating_sub(i0).min(kk), kk),
        }
    }
}

/// The height of `rows`' next row tile (at most 6) with `left` rows to go.
/// Eight rows left (a block of 32 queries: 6 x 4 + 8) go as 4 + 4, not
/// 6 + 2: a 2-row tile reuses each loaded row of B twice instead of four
/// times (AVX-512: backward -2%, forward -1% in `attention_speed`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline]
fn row_tile(left: usize) -> usize {
    if left >= 6 && left != 8 {
        6
    } else if left >= 4 {
        4
    } else if left >= 2 {
        2
    } else {
        1
    }
}

/// A build of the kernels that this CPU can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    Avx512,
    Avx2,
}

impl Kernels {
    /// The widest build this CPU runs, if any.
    pub fn detect() -> Option<Kernels> {
        Kernels::all_available().first().copied()
    }

    /// Every build this CPU runs, widest first (tests compare each with
    /// the `gemm` path).
    pub fn all_available() -> Vec<Kernels> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Kernels::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                all.push(Kernels::Avx2);
            }
        }
        all
    }

    /// `C (n, m)` = the epilogue of `A (n, k) B (k, m)`: `A`'s rows at
    /// stride `lda`, `B` and `C` (and the epilogue's `e`) at row stride `m`.
    /// Causal: column `i` is query `i0 + i`, row `j` key `j`; the rows of a
    /// tile of columns that no query of it sees are written zero, not
    /// computed.
    ///
    /// # Safety
    /// `self` came from [`Kernels::detect`] or [`Kernels::all_available`];
    /// every addressed element (and the epilogue's: `m` floats behind each
    /// pointer) must be inside its buffer; `C` must not overlap the
    /// operands.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn cols(
        self,
        nmk: (usize, usize, usize),
        i0: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ep: Epilogue,
    ) {
        // SAFETY: forwarded; the CPU has the build's instructions.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match self {
                Kernels::Avx512 => avx512::cols(nmk, i0, a, lda, b, c, ep),
                Kernels::Avx2 => avx2::cols(nmk, i0, a, lda, b, c, ep),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no attention kernels here: {self:?} {nmk:?} {i0} {a:?} {lda} {b:?} {c:?}")
    }

    /// `C (r, w) [+]= diag(s) A (r, kk) B (kk, w)`: `A[i][p]` at
    /// `a + i ars + p acs`, `B`'s rows at stride `ldb`, `C`'s at `ldc`; rows
    /// `i < acc_rows` of `C` are added to, the others written; `s` = 1 where
    /// `row_scale` is null. `causal` says which terms of the sums are known
    /// to be zero (`A` is a causal block) and are skipped.
    ///
    /// # Safety
    /// As [`Kernels::cols`]; `row_scale`, where given, has `r` floats.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn rows(
        self,
        rkw: (usize, usize, usize),
        causal: Causal,
        a: (*const f32, usize, usize),
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        acc_rows: usize,
        row_scale: *const f32,
    ) {
        // SAFETY: forwarded; the CPU has the build's instructions.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match self {
                Kernels::Avx512 => {
                    avx512::rows(rkw, causal, a, b, ldb, c, ldc, acc_rows, row_scale)
                }
                Kernels::Avx2 => avx2::rows(rkw, causal, a, b, ldb, c, ldc, acc_rows, row_scale),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (causal, a, b, ldb, c, ldc, acc_rows, row_scale);
            unreachable!("no attention kernels here: {self:?} {rkw:?}")
        }
    }

    /// `panel (w, m)` = the first `w` columns of `m` rows of `src` at row
    /// stride `rs`, transposed (a block's q or dy as the kernels' vector
    /// operand); `m` and `w` multiples of 8.
    ///
    /// # Safety
    /// As [`Kernels::cols`]; `panel` has `w m` floats, every addressed
    /// element of `src` is inside its buffer.
    pub unsafe fn transpose(
        self,
        panel: &mut [f32],
        src: &[f32],
        (m, rs, w): (usize, usize, usize),
    ) {
        assert!(m.is_multiple_of(8) && w.is_multiple_of(8) && panel.len() >= w * m && w <= rs);
        assert!(m == 0 || src.len() >= (m - 1) * rs + w);
        // SAFETY: both builds' CPUs have AVX2; the asserts bound every
        // access.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            avx2::transpose(panel.as_mut_ptr(), src.as_ptr(), m, rs, w)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no attention kernels here: {self:?}")
    }

    /// The softmax's element pass over a block of scores `s (n, m)` (keys,
    /// queries of the block, the first being `i0`): `s = exp(s - sub[i])`,
    /// zero where the causal mask hides key `j` from query `i0 + i`; where
    /// `sums` is not null, `sums[i]` = the column's sum.
    ///
    /// # Safety
    /// As [`Kernels::cols`]; `s` has `n m` floats, `sub` (and `sums`) `m`.
    pub unsafe fn exp_cols(
        self,
        s: *mut f32,
        nm: (usize, usize),
        i0: usize,
        sub: *const f32,
        sums: *mut f32,
    ) {
        // SAFETY: forwarded; the CPU has the build's instructions.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match self {
                Kernels::Avx512 => avx512::exp_cols(s, nm, i0, sub, sums),
                Kernels::Avx2 => avx2::exp_cols(s, nm, i0, sub, sums),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no attention kernels here: {self:?} {s:?} {nm:?} {i0} {sub:?} {sums:?}")
    }
}
