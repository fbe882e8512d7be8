//! The AVX-512 kernels (see the module above for what each computes).
//!
//! A vector holds 16 queries; [`cols`] computes tiles of up to 12 rows by
//! 32 columns and [`rows`] of up to 6 rows by 64 columns (24 of the 32
//! registers accumulate).

use std::arch::x86_64::*;

use super::{Causal, Epilogue, row_tile};

/// Lanes `0..left` (all 16 from 16 on).
#[inline(always)]
fn first(left: usize) -> __mmask16 {
    if left >= 16 {
        0xFFFF
    } else {
        ((1u32 << left) - 1) as __mmask16
    }
}

/// The lanes of vector `v` of row `j` that the causal mask keeps: query
/// `i0 + 16 v + l` sees key `j` when `j <= i0 + 16 v + l`.
#[inline(always)]
fn seen(j: usize, i0: usize, v: usize) -> __mmask16 {
    let skip = (j.saturating_sub(i0)).saturating_sub(16 * v);
    !first(skip)
}

/// `C (n, m)` = the epilogue of `A (n, k) B (k, m)`: `A`'s rows at stride
/// `lda`, `B` and `C` (and the epilogue's `e`) at row stride `m`. Causal:
/// column `i` is query `i0 + i`, row `j` key `j`; the rows of a tile of 32
/// columns that no query of it sees are written zero, not computed.
///
/// # Safety
/// AVX-512F must be available; every addressed element
/// (and the epilogue's: `m` floats behind each pointer) must be inside its
/// buffer; `C` must not overlap the operands.
#[target_feature(enable = "avx512f")]
pub unsafe fn cols(
    (n, m, k): (usize, usize, usize),
    i0: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ep: Epilogue,
) {
    let mut w0 = 0;
    while w0 < m {
        let seen = n.min(i0 + w0 + 32);
        let mut j0 = 0;
        while j0 < seen {
            let args = (j0, w0, m, k, a, lda, b, c, ep, i0);
            let left = seen - j0;
            // SAFETY: forwarded.
            let rows = unsafe {
                match (m - w0 >= 32, left) {
                    (true, 12..) => cols_tile::<12, true>(args),
                    (true, 8..) => cols_tile::<8, true>(args),
                    (true, 4..) => cols_tile::<4, true>(args),
                    (true, _) => cols_tile::<1, true>(args),
                    (false, 12..) => cols_tile::<12, false>(args),
                    (false, 8..) => cols_tile::<8, false>(args),
                    (false, 4..) => cols_tile::<4, false>(args),
                    (false, _) => cols_tile::<1, false>(args),
                }
            };
            j0 += rows;
        }
        let lanes = first(m - w0) as u32 | (first((m - w0).saturating_sub(16)) as u32) << 16;
        for j in seen..n {
            let out = unsafe { c.add(j * m + w0) };
            // SAFETY: row j's columns w0.. of C.
            unsafe {
                _mm512_mask_storeu_ps(out, lanes as __mmask16, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(out.add(16), (lanes >> 16) as __mmask16, _mm512_setzero_ps());
            }
        }
        w0 += 32;
    }
}

type ColsArgs = (
    usize,
    usize,
    usize,
    usize,
    *const f32,
    usize,
    *const f32,
    *mut f32,
    Epilogue,
    usize,
);

/// One tile of [`cols`]: rows `j0..j0 + R`, columns `w0..w0 + 32` (fewer
/// at the end of a row unless `FULL`); returns `R`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn cols_tile<const R: usize, const FULL: bool>(
    (j0, w0, m, k, a, lda, b, c, ep, i0): ColsArgs,
) -> usize {
    const V: usize = 2;
    let mut masks = [0 as __mmask16; V];
    for (v, mask) in masks.iter_mut().enumerate() {
        *mask = first(m.saturating_sub(w0 + 16 * v));
    }
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    unsafe {
        // The tile's rows of C come into the cache while the products run:
        // in the training step C is the kept exponentials (half a (t, t)
        // matrix per head, far past the caches), whose lines the
        // epilogue's stores would otherwise wait for (the forward at context
        // 1,024: -4%).
        // (A prefetch never faults; the address past a short row's end is
        // only formed, with `wrapping_add`, not dereferenced.)
        for r in 0..R {
            let row = c.add((j0 + r) * m + w0) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64));
        }
        let a = a.add(j0 * lda);
        let mut bp = b.add(w0);
        for p in 0..k {
            let mut bv = [_mm512_setzero_ps(); V];
            for v in 0..V {
                bv[v] = if FULL {
                    _mm512_loadu_ps(bp.add(16 * v))
                } else {
                    _mm512_maskz_loadu_ps(masks[v], bp.add(16 * v))
                };
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*a.add(r * lda + p));
                for v in 0..V {
                    acc[v] = _mm512_fmadd_ps(x, bv[v], acc[v]);
                }
            }
            bp = bp.add(m);
        }
        macro_rules! load {
            ($p:expr, $v:expr) => {
                if FULL {
                    _mm512_loadu_ps($p.add(16 * $v))
                } else {
                    _mm512_maskz_loadu_ps(masks[$v], $p.add(16 * $v))
                }
            };
        }
        macro_rules! store {
            ($p:expr, $v:expr, $x:expr) => {
                if FULL {
                    _mm512_storeu_ps($p.add(16 * $v), $x)
                } else {
                    _mm512_mask_storeu_ps($p.add(16 * $v), masks[$v], $x)
                }
            };
        }
        match ep {
            Epilogue::ScoresMax { scale, colmax } => {
                let s = _mm512_set1_ps(scale);
                let colmax = colmax.add(w0);
                let mut mx = [_mm512_setzero_ps(); V];
                for v in 0..V {
                    mx[v] = load!(colmax, v);
                }
                // Every query of the tile sees all its rows (keys): no mask.
                let all_seen = j0 + R <= i0 + w0 + 1;
                for (r, acc) in acc.iter().enumerate() {
                    let j = j0 + r;
                    let out = c.add(j * m + w0);
                    for v in 0..V {
                        let x = _mm512_mul_ps(acc[v], s);
                        store!(out, v, x);
                        mx[v] = if all_seen {
                            _mm512_max_ps(mx[v], x)
                        } else {
                            _mm512_mask_max_ps(mx[v], seen(j, i0 + w0, v), mx[v], x)
                        };
                    }
                }
                for v in 0..V {
                    store!(colmax, v, mx[v]);
                }
            }
            Epilogue::Scores { scale } => {
                let s = _mm512_set1_ps(scale);
                for (r, acc) in acc.iter().enumerate() {
                    let out = c.add((j0 + r) * m + w0);
                    for v in 0..V {
                        store!(out, v, _mm512_mul_ps(acc[v], s));
                    }
                }
            }
            Epilogue::ScoreGrad { e, coef, dd } => {
                let (mut cf, mut di) = ([_mm512_setzero_ps(); V], [_mm512_setzero_ps(); V]);
                for v in 0..V {
                    cf[v] = load!(coef.add(w0), v);
                    di[v] = load!(dd.add(w0), v);
                }
                for (r, acc) in acc.iter().enumerate() {
                    let at = (j0 + r) * m + w0;
                    let (e, out) = (e.add(at), c.add(at));
                    for v in 0..V {
                        let ec = _mm512_mul_ps(load!(e, v), cf[v]);
                        store!(out, v, _mm512_mul_ps(ec, _mm512_sub_ps(acc[v], di[v])));
                    }
                }
            }
        }
    }
    R
}

/// `C (r, w) [+]= diag(s) A (r, kk) B (kk, w)`: `A[i][p]` at
/// `a + i ars + p acs`, `B`'s rows at stride `ldb`, `C`'s at `ldc`; rows
/// `i < acc_rows` of `C` are added to, the others written; `s` = 1 where
/// `row_scale` is null. `causal` says which terms of the sums are known to
/// be zero (`A` is a causal block) and are skipped.
///
/// # Safety
/// As [`cols`]; `row_scale`, where given, has `r` floats.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn rows(
    (r, kk, w): (usize, usize, usize),
    causal: Causal,
    (a, ars, acs): (*const f32, usize, usize),
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    acc_rows: usize,
    row_scale: *const f32,
) {
    let mut w0 = 0;
    while w0 < w {
        let full = w0 + 64 <= w;
        let mut i0 = 0;
        while i0 < r {
            let left = r - i0;
            let rows = row_tile(left);
            let (p0, p1) = causal.terms(kk, i0, rows);
            let args = (
                i0, w0, p0, p1, w, a, ars, acs, b, ldb, c, ldc, acc_rows, row_scale,
            );
            // SAFETY: forwarded.
            let done = unsafe {
                match (full, rows) {
                    (true, 6) => rows_tile::<6, true>(args),
                    (true, 4) => rows_tile::<4, true>(args),
                    (true, 2) => rows_tile::<2, true>(args),
                    (true, _) => rows_tile::<1, true>(args),
                    (false, 6) => rows_tile::<6, false>(args),
                    (false, 4) => rows_tile::<4, false>(args),
                    (false, 2) => rows_tile::<2, false>(args),
                    (false, _) => rows_tile::<1, false>(args),
                }
            };
            i0 += done;
        }
        w0 += 64;
    }
}

type RowsArgs = (
    usize,
    usize,
    usize,
    usize,
    usize,
    *const f32,
    usize,
    usize,
    *const f32,
    usize,
    *mut f32,
    usize,
    usize,
    *const f32,
);

/// One tile of [`rows`]: rows `i0..i0 + R`, columns `w0..w0 + 64` (fewer
/// at the end unless `FULL`); returns `R`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn rows_tile<const R: usize, const FULL: bool>(
    (i0, w0, p0, p1, w, a, ars, acs, b, ldb, c, ldc, acc_rows, row_scale): RowsArgs,
) -> usize {
    const V: usize = 4;
    let mut masks = [0 as __mmask16; V];
    for (v, mask) in masks.iter_mut().enumerate() {
        *mask = first(w.saturating_sub(w0 + 16 * v));
    }
    unsafe {
        macro_rules! load {
            ($p:expr, $v:expr) => {
                if FULL {
                    _mm512_loadu_ps($p.add(16 * $v))
                } else {
                    _mm512_maskz_loadu_ps(masks[$v], $p.add(16 * $v))
                }
            };
        }
        let out = c.add(i0 * ldc + w0);
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (q, acc) in acc.iter_mut().enumerate() {
            if i0 + q < acc_rows {
                for v in 0..V {
                    acc[v] = load!(out.add(q * ldc), v);
                }
            }
        }
        let a = a.add(i0 * ars);
        if ars > acs {
            // The next tile's rows of A, when A is a block read row by row
            // (the kept probabilities come from memory): -18% time of
            // `P^T dY` at context 1,024.
            let next = a.wrapping_add(R * ars) as *const i8;
            for l in 0..(R * ars * 4).div_ceil(64) {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64 * l));
            }
        }
        let mut bp = b.add(p0 * ldb + w0);
        for p in p0..p1 {
            let mut bv = [_mm512_setzero_ps(); V];
            for v in 0..V {
                bv[v] = load!(bp, v);
            }
            let ap = a.add(p * acs);
            for (q, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*ap.add(q * ars));
                for v in 0..V {
                    acc[v] = _mm512_fmadd_ps(x, bv[v], acc[v]);
                }
            }
            bp = bp.add(ldb);
        }
        let scaled = !row_scale.is_null();
        for (q, acc) in acc.iter().enumerate() {
            let o = out.add(q * ldc);
            let s = _mm512_set1_ps(if scaled { *row_scale.add(i0 + q) } else { 1.0 });
            for v in 0..V {
                let x = if scaled {
                    _mm512_mul_ps(acc[v], s)
                } else {
                    acc[v]
                };
                if FULL {
                    _mm512_storeu_ps(o.add(16 * v), x)
                } else {
                    _mm512_mask_storeu_ps(o.add(16 * v), masks[v], x)
                }
            }
        }
    }
    R
}

/// `e^x` of 16 lanes: `fastmath::exp`'s method (clamp, `2^n e^r` with a
/// degree-7 polynomial), with fused multiply-adds.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp16(x: __m512) -> __m512 {
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
        _mm512_set1_ps(88.0),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_fmadd_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
        _mm512_set1_ps(0.5),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// The softmax's element pass over a block of scores `s (n, m)` (keys,
/// queries of the block, the first being `i0`): `s = exp(s - sub[i])`, zero
/// where the causal mask hides key `j` from query `i0 + i`; where `sums` is
/// not null, `sums[i]` = the column's sum.
///
/// # Safety
/// AVX-512F must be available; `s` has `n m` floats, `sub` (and `sums`) `m`.
#[target_feature(enable = "avx512f")]
pub unsafe fn exp_cols(
    s: *mut f32,
    (n, m): (usize, usize),
    i0: usize,
    sub: *const f32,
    sums: *mut f32,
) {
    let mut w0 = 0;
    while w0 < m {
        let lanes = first(m - w0);
        unsafe {
            let b = _mm512_maskz_loadu_ps(lanes, sub.add(w0));
            let mut acc = _mm512_setzero_ps();
            let rows = n.min(i0 + w0 + 16);
            for j in rows..n {
                _mm512_mask_storeu_ps(s.add(j * m + w0), lanes, _mm512_setzero_ps());
            }
            for j in 0..rows {
                let p = s.add(j * m + w0);
                let keep = lanes & seen(j, i0 + w0, 0);
                let e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, p), b));
                let e = _mm512_maskz_mov_ps(keep, e);
                acc = _mm512_add_ps(acc, e);
                _mm512_mask_storeu_ps(p, lanes, e);
            }
            if !sums.is_null() {
                _mm512_mask_storeu_ps(sums.add(w0), lanes, acc);
            }
        }
        w0 += 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp16_matches_libm() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        crate::train::fastmath::assert_lanes_match_libm(|xs: [f32; 16]| {
            let mut out = [0f32; 16];
            // SAFETY: AVX-512F is there; 16 floats each.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), exp16(_mm512_loadu_ps(xs.as_ptr()))) };
            out
        });
    }
}
