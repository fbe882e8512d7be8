//! `e^x` of eight lanes with AVX2 and FMA, for the attention's softmax
//! (`attention_kernels::avx2`) and the MLP's GELU (`gelu_avx2`).

use std::arch::x86_64::*;

/// `e^x` of 8 lanes: `fastmath::exp`'s method (clamp, `2^n e^r` with a
/// degree-7 polynomial), with fused multiply-adds; `2^n` built in the
/// exponent bits (`n` is in -125..=127 after the clamp, so it is exact).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let n = _mm256_floor_ps(_mm256_fmadd_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
        _mm256_set1_ps(0.5),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    // The degree-7 Taylor polynomial of e^r by Estrin's scheme: halves
    // summed in parallel, a chain of 4 FMAs instead of 7 (a block's
    // exponentials, and GELU's, wait on the chain's latency, not the FMA
    // units).
    let c = _mm256_set1_ps;
    let r2 = _mm256_mul_ps(r, r);
    let r4 = _mm256_mul_ps(r2, r2);
    let p01 = _mm256_add_ps(r, c(1.0));
    let p23 = _mm256_fmadd_ps(r, c(1.0 / 6.0), c(0.5));
    let p45 = _mm256_fmadd_ps(r, c(1.0 / 120.0), c(1.0 / 24.0));
    let p67 = _mm256_fmadd_ps(r, c(1.0 / 5040.0), c(1.0 / 720.0));
    let low = _mm256_fmadd_ps(r2, p23, p01);
    let high = _mm256_fmadd_ps(r2, p67, p45);
    let p = _mm256_fmadd_ps(r4, high, low);
    let bits = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp8_matches_libm() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        crate::train::fastmath::assert_lanes_match_libm(|xs: [f32; 8]| {
            let mut out = [0f32; 8];
            // SAFETY: AVX2 and FMA are there; 8 floats each.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8(_mm256_loadu_ps(xs.as_ptr()))) };
            out
        });
    }
}
