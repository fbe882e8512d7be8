//! The 6 x 16 micro-kernel on AVX2 with FMA: 12 accumulators, two loaded
//! vectors of `B` and one broadcast of `A` per step: 15 of the 16 registers.

use std::arch::x86_64::*;

use super::{MR, NR};

/// `C[..live, ..cols] (=|+=) A_strip B_strip` over `kc` terms: `a` is
/// `kc x 6` and `b` `kc x 16`, packed; `c` has row stride `ldc`. `first`
/// overwrites `C`, else the tile is added to it.
///
/// # Safety
/// AVX2 and FMA must be available.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile(
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    (live, cols): (usize, usize),
    first: bool,
) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    assert!(live <= MR && cols <= NR && live >= 1 && cols >= 1);
    assert!(c.len() >= (live - 1) * ldc + cols);
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    // SAFETY: the asserts above bound every read of `a` and `b`, and every
    // access to `c` below.
    unsafe {
        for r in 0..live {
            _mm_prefetch::<_MM_HINT_T0>(c.as_ptr().add(r * ldc) as *const i8);
        }
        let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*ap.add(r));
                acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        if cols == NR {
            for (r, acc) in acc.iter().enumerate().take(live) {
                let out = c.as_mut_ptr().add(r * ldc);
                for (v, &x) in acc.iter().enumerate() {
                    let p = out.add(8 * v);
                    let x = if first {
                        x
                    } else {
                        _mm256_add_ps(_mm256_loadu_ps(p), x)
                    };
                    _mm256_storeu_ps(p, x);
                }
            }
        } else {
            let mut spill = [0f32; NR];
            for (r, acc) in acc.iter().enumerate().take(live) {
                _mm256_storeu_ps(spill.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(spill.as_mut_ptr().add(8), acc[1]);
                let out = &mut c[r * ldc..r * ldc + cols];
                for (o, &x) in out.iter_mut().zip(&spill) {
                    *o = if first { x } else { *o + x };
                }
            }
        }
    }
}
