//! The AVX2 kernels (with FMA), for CPUs without AVX-512: the same
//! operations, layouts and order of every sum as [`super::avx512`], on
//! 8-lane vectors. AVX2 has 16 registers, so a tile is at most 6 rows by
//! 16 columns (12 accumulators, 2 loaded vectors and 1 broadcast), the
//! shape of the usual AVX2 `gemm` micro-kernel.

use std::arch::x86_64::*;

use super::super::exp_avx2::exp8;
use super::{Causal, Epilogue, row_tile};

/// Columns of a tile: two vectors.
const W: usize = 16;
const V: usize = 2;

/// Lanes `0..left` (all 8 from 8 on), as a mask for `maskload`/`maskstore`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn first(left: usize) -> __m256i {
    let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(left.min(8) as i32), iota)
}

/// The lanes of vector `v` of row `j` that the causal mask keeps: query
/// `i0 + 8 v + l` sees key `j` when `j <= i0 + 8 v + l`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn seen(j: usize, i0: usize, v: usize) -> __m256 {
    let skip = (j.saturating_sub(i0)).saturating_sub(8 * v).min(8);
    let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_castsi256_ps(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32(skip as i32 - 1)))
}

/// Vector `v` of the floats at `p` (from `p + 8 v`): all 8 lanes where
/// `FULL`, else the lanes of `masks[v]` (the others read as zero and are not
/// touched). Masked loads and stores are slow on AMD: only at the ends.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load<const FULL: bool>(p: *const f32, v: usize, masks: &[__m256i]) -> __m256 {
    // SAFETY: the caller's.
    unsafe {
        if FULL {
            _mm256_loadu_ps(p.add(8 * v))
        } else {
            _mm256_maskload_ps(p.add(8 * v), masks[v])
        }
    }
}

/// [`load`]'s store.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store<const FULL: bool>(p: *mut f32, v: usize, masks: &[__m256i], x: __m256) {
    // SAFETY: the caller's.
    unsafe {
        if FULL {
            _mm256_storeu_ps(p.add(8 * v), x)
        } else {
            _mm256_maskstore_ps(p.add(8 * v), masks[v], x)
        }
    }
}

/// See [`super::Kernels::cols`]; tiles of 16 columns.
///
/// # Safety
/// AVX2 and FMA must be available; as [`super::Kernels::cols`].
#[target_feature(enable = "avx2,fma")]
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
        let seen = n.min(i0 + w0 + W);
        let mut j0 = 0;
        while j0 < seen {
            let args = (j0, w0, m, k, a, lda, b, c, ep, i0);
            let left = seen - j0;
            // SAFETY: forwarded.
            let rows = unsafe {
                match (m - w0 >= W, left) {
                    (true, 6..) => cols_tile::<6, true>(args),
                    (true, 4..) => cols_tile::<4, true>(args),
                    (true, 2..) => cols_tile::<2, true>(args),
                    (true, _) => cols_tile::<1, true>(args),
                    (false, 6..) => cols_tile::<6, false>(args),
                    (false, 4..) => cols_tile::<4, false>(args),
                    (false, 2..) => cols_tile::<2, false>(args),
                    (false, _) => cols_tile::<1, false>(args),
                }
            };
            j0 += rows;
        }
        let lanes = [first(m - w0), first((m - w0).saturating_sub(8))];
        let zero = _mm256_setzero_ps();
        for j in seen..n {
            // SAFETY: row j's columns w0.. of C.
            unsafe {
                let out = c.add(j * m + w0);
                for v in 0..V {
                    if m - w0 >= W {
                        store::<true>(out, v, &lanes, zero);
                    } else {
                        store::<false>(out, v, &lanes, zero);
                    }
                }
            }
        }
        w0 += W;
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

/// One tile of [`cols`]: rows `j0..j0 + R`, columns `w0..w0 + 16` (fewer
/// at the end of a row unless `FULL`); returns `R`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn cols_tile<const R: usize, const FULL: bool>(
    (j0, w0, m, k, a, lda, b, c, ep, i0): ColsArgs,
) -> usize {
    let mut masks = [_mm256_setzero_si256(); V];
    for (v, mask) in masks.iter_mut().enumerate() {
        *mask = first(m.saturating_sub(w0 + 8 * v));
    }
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    unsafe {
        // The tile's rows of C come into the cache while the products run
        // (as in the AVX-512 build: C is the kept exponentials, far past
        // the caches). A prefetch never faults.
        for r in 0..R {
            _mm_prefetch::<_MM_HINT_T0>(c.add((j0 + r) * m + w0) as *const i8);
        }
        let a = a.add(j0 * lda);
        let mut bp = b.add(w0);
        for p in 0..k {
            let mut bv = [_mm256_setzero_ps(); V];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = load::<FULL>(bp, v, &masks);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(r * lda + p));
                for v in 0..V {
                    acc[v] = _mm256_fmadd_ps(x, bv[v], acc[v]);
                }
            }
            bp = bp.add(m);
        }
        match ep {
            Epilogue::ScoresMax { scale, colmax } => {
                let s = _mm256_set1_ps(scale);
                let colmax = colmax.add(w0);
                let mut mx = [_mm256_setzero_ps(); V];
                for (v, mx) in mx.iter_mut().enumerate() {
                    *mx = load::<FULL>(colmax, v, &masks);
                }
                // Every query of the tile sees all its rows (keys): no mask.
                let all_seen = j0 + R <= i0 + w0 + 1;
                for (r, acc) in acc.iter().enumerate() {
                    let j = j0 + r;
                    let out = c.add(j * m + w0);
                    for v in 0..V {
                        let x = _mm256_mul_ps(acc[v], s);
                        store::<FULL>(out, v, &masks, x);
                        let max = _mm256_max_ps(mx[v], x);
                        mx[v] = if all_seen {
                            max
                        } else {
                            _mm256_blendv_ps(mx[v], max, seen(j, i0 + w0, v))
                        };
                    }
                }
                for (v, &mx) in mx.iter().enumerate() {
                    store::<FULL>(colmax, v, &masks, mx);
                }
            }
            Epilogue::Scores { scale } => {
                let s = _mm256_set1_ps(scale);
                for (r, acc) in acc.iter().enumerate() {
                    let out = c.add((j0 + r) * m + w0);
                    for v in 0..V {
                        store::<FULL>(out, v, &masks, _mm256_mul_ps(acc[v], s));
                    }
                }
            }
            Epilogue::ScoreGrad { e, coef, dd } => {
                let (mut cf, mut di) = ([_mm256_setzero_ps(); V], [_mm256_setzero_ps(); V]);
                for v in 0..V {
                    cf[v] = load::<FULL>(coef.add(w0), v, &masks);
                    di[v] = load::<FULL>(dd.add(w0), v, &masks);
                }
                for (r, acc) in acc.iter().enumerate() {
                    let at = (j0 + r) * m + w0;
                    let (e, out) = (e.add(at), c.add(at));
                    for v in 0..V {
                        let ec = _mm256_mul_ps(load::<FULL>(e, v, &masks), cf[v]);
                        store::<FULL>(
                            out,
                            v,
                            &masks,
                            _mm256_mul_ps(ec, _mm256_sub_ps(acc[v], di[v])),
                        );
                    }
                }
            }
        }
    }
    R
}

/// See [`super::Kernels::rows`]; tiles of up to 6 rows by 16 columns.
/// The sums run over the inner index in chunks of [`KC`]: a chunk's rows of
/// B and its part of A stay in L1 while every tile uses them (a sum over
/// 1,024 keys fetched them from L2 once per tile: `P V` and `dS K` ran at
/// 63% of the FMA peak), and between chunks a tile's partial sums wait in
/// C (the same sums in the same order: the same bits).
///
/// # Safety
/// AVX2 and FMA must be available; as [`super::Kernels::rows`].
#[target_feature(enable = "avx2,fma")]
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
    for chunk in 0..kk.div_ceil(KC).max(1) {
        let (c0, c1) = (chunk * KC, ((chunk + 1) * KC).min(kk));
        // Row tiles outside, column tiles inside: a tile's rows of C (whole
        // lines) and of A serve every column tile at once.
        let mut i0 = 0;
        while i0 < r {
            let left = r - i0;
            let rows = row_tile(left);
            let (p0, p1) = causal.terms(kk, i0, rows);
            // The tile's first and last chunks (chunk 0 alone where it
            // sums nothing: C is still written).
            let (first_chunk, last_chunk) = if p0 < p1 {
                (p0 / KC, (p1 - 1) / KC)
            } else {
                (0, 0)
            };
            if (first_chunk..=last_chunk).contains(&chunk) {
                let lo = p0.max(c0);
                let hi = p1.min(c1).max(lo);
                let from_c = if chunk == first_chunk {
                    acc_rows
                } else {
                    usize::MAX
                };
                let scale = if chunk == last_chunk {
                    row_scale
                } else {
                    std::ptr::null()
                };
                let mut w0 = 0;
                while w0 < w {
                    let full = w0 + W <= w;
                    let args = (
                        i0, w0, lo, hi, w, a, ars, acs, b, ldb, c, ldc, from_c, scale,
                    );
                    // SAFETY: forwarded.
                    unsafe {
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
                    w0 += W;
                }
            }
            i0 += rows;
        }
    }
}

/// The inner index's chunk in [`rows`]: 64 rows of B (16 KB at head_dim
/// 64) and of a transposed block of A (8 KB) fit L1 together.
const KC: usize = 64;

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

/// One tile of [`rows`]: rows `i0..i0 + R`, columns `w0..w0 + 16` (fewer
/// at the end unless `FULL`), the terms `p0..p1`; rows `i < from_c` start
/// from what C holds, the others from zero; returns `R`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn rows_tile<const R: usize, const FULL: bool>(
    (i0, w0, p0, p1, w, a, ars, acs, b, ldb, c, ldc, from_c, row_scale): RowsArgs,
) -> usize {
    let mut masks = [_mm256_setzero_si256(); V];
    for (v, mask) in masks.iter_mut().enumerate() {
        *mask = first(w.saturating_sub(w0 + 8 * v));
    }
    unsafe {
        let out = c.add(i0 * ldc + w0);
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        for (q, acc) in acc.iter_mut().enumerate() {
            if i0 + q < from_c {
                for (v, acc) in acc.iter_mut().enumerate() {
                    *acc = load::<FULL>(out.add(q * ldc), v, &masks);
                }
            }
        }
        let a = a.add(i0 * ars);
        if ars > acs && w0 == 0 {
            // The next tile's rows of A, when A is a block read row by row
            // (the kept probabilities come from memory), once per row tile.
            let next = a.wrapping_add(R * ars) as *const i8;
            for l in 0..(R * ars * 4).div_ceil(64) {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64 * l));
            }
        }
        let mut bp = b.add(p0 * ldb + w0);
        for p in p0..p1 {
            let mut bv = [_mm256_setzero_ps(); V];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = load::<FULL>(bp, v, &masks);
            }
            let ap = a.add(p * acs);
            for (q, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*ap.add(q * ars));
                for v in 0..V {
                    acc[v] = _mm256_fmadd_ps(x, bv[v], acc[v]);
                }
            }
            bp = bp.add(ldb);
        }
        let scaled = !row_scale.is_null();
        for (q, acc) in acc.iter().enumerate() {
            let o = out.add(q * ldc);
            let s = _mm256_set1_ps(if scaled { *row_scale.add(i0 + q) } else { 1.0 });
            for v in 0..V {
                let x = if scaled {
                    _mm256_mul_ps(acc[v], s)
                } else {
                    acc[v]
                };
                store::<FULL>(o, v, &masks, x);
            }
        }
    }
    R
}

/// See [`super::Kernels::exp_cols`]. Rows outside, 32 columns inside: a
/// row's 32 floats are one or two cache lines (a block of 1,024 keys walked
/// 8 columns at a time fetched every line four times, and took 3x as long).
///
/// # Safety
/// AVX2 and FMA must be available; as [`super::Kernels::exp_cols`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp_cols(
    s: *mut f32,
    (n, m): (usize, usize),
    i0: usize,
    sub: *const f32,
    sums: *mut f32,
) {
    let mut w0 = 0;
    while w0 < m {
        // SAFETY: forwarded.
        unsafe {
            if m - w0 >= 8 * G {
                exp_cols_group::<true>(s, (n, m), i0, w0, sub, sums)
            } else {
                exp_cols_group::<false>(s, (n, m), i0, w0, sub, sums)
            }
        }
        w0 += 8 * G;
    }
}

/// Vectors of one group of [`exp_cols`].
const G: usize = 4;

/// [`exp_cols`] on columns `w0..w0 + 32` (fewer at the end unless `FULL`:
/// masked loads and stores, which are slow on AMD, only there).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp_cols_group<const FULL: bool>(
    s: *mut f32,
    (n, m): (usize, usize),
    i0: usize,
    w0: usize,
    sub: *const f32,
    sums: *mut f32,
) {
    let mut lanes = [_mm256_setzero_si256(); G];
    for (v, lanes) in lanes.iter_mut().enumerate() {
        *lanes = first((m - w0).saturating_sub(8 * v));
    }
    unsafe {
        let sub = sub.add(w0);
        let mut b = [_mm256_setzero_ps(); G];
        for (v, b) in b.iter_mut().enumerate() {
            *b = load::<FULL>(sub, v, &lanes);
        }
        let mut acc = [_mm256_setzero_ps(); G];
        // Rows that no query of the group sees are zero; in the others a
        // vector's hidden lanes are masked to zero.
        let rows = n.min(i0 + w0 + 8 * G);
        for j in rows..n {
            for v in 0..G {
                store::<FULL>(s.add(j * m + w0), v, &lanes, _mm256_setzero_ps());
            }
        }
        for j in 0..rows {
            let p = s.add(j * m + w0);
            for v in 0..G {
                let e = exp8(_mm256_sub_ps(load::<FULL>(p, v, &lanes), b[v]));
                let e = _mm256_and_ps(e, seen(j, i0 + w0, v));
                acc[v] = _mm256_add_ps(acc[v], e);
                store::<FULL>(p, v, &lanes, e);
            }
        }
        if !sums.is_null() {
            let sums = sums.add(w0);
            for (v, &acc) in acc.iter().enumerate() {
                store::<FULL>(sums, v, &lanes, acc);
            }
        }
    }
}

/// See [`super::Kernels::transpose`]: 8 x 8 tiles, each 8 row loads,
/// 24 shuffles and 8 stores (the scalar loop wrote one float at a time,
/// `m` floats apart: ~3% of the attention's forward at context 1,024).
///
/// # Safety
/// AVX2 must be available; as [`super::Kernels::transpose`].
#[target_feature(enable = "avx2")]
pub unsafe fn transpose(panel: *mut f32, src: *const f32, m: usize, rs: usize, w: usize) {
    debug_assert!(m.is_multiple_of(8) && w.is_multiple_of(8));
    unsafe {
        for i0 in (0..m).step_by(8) {
            for c0 in (0..w).step_by(8) {
                let at = |r: usize| _mm256_loadu_ps(src.add((i0 + r) * rs + c0));
                let (r0, r1, r2, r3) = (at(0), at(1), at(2), at(3));
                let (r4, r5, r6, r7) = (at(4), at(5), at(6), at(7));
                let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let out = |c: usize, v: __m256| _mm256_storeu_ps(panel.add((c0 + c) * m + i0), v);
                out(0, _mm256_permute2f128_ps::<0x20>(u0, u4));
                out(1, _mm256_permute2f128_ps::<0x20>(u1, u5));
                out(2, _mm256_permute2f128_ps::<0x20>(u2, u6));
                out(3, _mm256_permute2f128_ps::<0x20>(u3, u7));
                out(4, _mm256_permute2f128_ps::<0x31>(u0, u4));
                out(5, _mm256_permute2f128_ps::<0x31>(u1, u5));
                out(6, _mm256_permute2f128_ps::<0x31>(u2, u6));
                out(7, _mm256_permute2f128_ps::<0x31>(u3, u7));
            }
        }
    }
}

/// Each kernel alone at the long-context shapes (a key range of 1,024, a
/// block of 32 queries, head_dim 64), in GFLOP/s, beside `fma_peak`: a tool
/// for work on the kernels (`cargo test --release -p vgmake-stages --lib
/// -- --ignored avx2_kernel_rates --nocapture`).
#[cfg(test)]
mod rates {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn avx2_kernel_rates() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let (n, m, hd, ld) = (1024usize, 32usize, 64usize, 768usize);
        let fill = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 37 + seed) % 101) as f32 / 101.0 - 0.5)
                .collect()
        };
        let (p, kc, dys) = (fill(n * m, 1), fill(n * hd, 2), fill(m * hd, 3));
        let mut dv = fill(n * ld, 4);
        let mut dq = fill(m * ld, 5);
        let mut s = vec![0f32; n * m];
        let mut colmax = vec![f32::NEG_INFINITY; m];
        let mut sums = vec![0f32; m];
        let time = |f: &mut dyn FnMut()| {
            let mut best = f64::MAX;
            for _ in 0..200 {
                let t = Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            best
        };
        let i0 = n - m;
        let macs = (n * m * hd) as f64;
        // SAFETY (all three): AVX2 and FMA are there; every buffer holds
        // what the shapes address.
        let key_rows = time(&mut || unsafe {
            rows(
                (n, m, hd),
                Causal::KeyRows { i0 },
                (p.as_ptr(), m, 1),
                dys.as_ptr(),
                hd,
                dv.as_mut_ptr(),
                ld,
                i0,
                std::ptr::null(),
            )
        });
        let qx = fill(m * ld, 6);
        let key_rows_strided = time(&mut || unsafe {
            rows(
                (n, m, hd),
                Causal::KeyRows { i0 },
                (p.as_ptr(), m, 1),
                qx.as_ptr(),
                ld,
                dv.as_mut_ptr(),
                ld,
                i0,
                std::ptr::null(),
            )
        });
        let query_rows = time(&mut || unsafe {
            rows(
                (m, n, hd),
                Causal::QueryRows { i0 },
                (p.as_ptr(), 1, m),
                kc.as_ptr(),
                hd,
                dq.as_mut_ptr(),
                ld,
                0,
                std::ptr::null(),
            )
        });
        let cols_max = time(&mut || unsafe {
            cols(
                (n, m, hd),
                i0,
                kc.as_ptr(),
                hd,
                dys.as_ptr(),
                s.as_mut_ptr(),
                Epilogue::ScoresMax {
                    scale: 0.125,
                    colmax: colmax.as_mut_ptr(),
                },
            )
        });
        let exp = time(&mut || unsafe {
            exp_cols(
                s.as_mut_ptr(),
                (n, m),
                i0,
                colmax.as_ptr(),
                sums.as_mut_ptr(),
            )
        });
        for (what, secs) in [
            ("rows, key rows, B contiguous (dV)", key_rows),
            ("rows, key rows, B rows 3 d apart (dK)", key_rows_strided),
            ("rows, query rows (Y, dQ)", query_rows),
            ("cols, scores and maxima", cols_max),
        ] {
            eprintln!(
                "{what}: {:.1} us, {:.1} GFLOP/s",
                secs * 1e6,
                2.0 * macs / secs / 1e9
            );
        }
        eprintln!("exp_cols: {:.1} us", exp * 1e6);
    }
}
