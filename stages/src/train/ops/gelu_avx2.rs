//! GELU's value and slope eight values at a time with AVX2 and FMA: the
//! MLP's forward pass, where the compiler's vectorization of the scalar
//! [`gelu`] functions ran at ~1.8 ns a value on a Zen 3. Their `exp` is one
//! long chain of dependent operations (a degree-7 polynomial by Horner's
//! rule, without FMA, to keep the scalar code's bits), so only a few
//! vectors were in flight. Here the exp is the attention's [`exp8`] (its
//! polynomial by Estrin's scheme) and every multiply-add is one FMA: the
//! chain is about half as long. The results differ from the scalar
//! functions in the last bits (tests: within 2e-6); the fused step, which
//! alone uses them, uses them on every row and for every thread count.

use std::arch::x86_64::*;

use super::exp_avx2::exp8;
use super::gelu;

/// `g = gelu(u + b)` and `u = gelu'(u + b)` for every value of the row
/// (as [`super::vector::bias_gelu_row`]).
///
/// # Safety
/// AVX2 and FMA must be available.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn bias_gelu_row(u: &mut [f32], g: &mut [f32], b: &[f32]) {
    let n = u.len().min(g.len()).min(b.len());
    let full = n - n % 16;
    let mut i = 0;
    // SAFETY: i + 16 <= full <= the length of each slice.
    unsafe {
        while i < full {
            // Two independent vectors per step keep more chains in flight.
            let x0 = _mm256_add_ps(
                _mm256_loadu_ps(u.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            );
            let x1 = _mm256_add_ps(
                _mm256_loadu_ps(u.as_ptr().add(i + 8)),
                _mm256_loadu_ps(b.as_ptr().add(i + 8)),
            );
            let (g0, s0) = value_and_slope(x0);
            let (g1, s1) = value_and_slope(x1);
            _mm256_storeu_ps(g.as_mut_ptr().add(i), g0);
            _mm256_storeu_ps(g.as_mut_ptr().add(i + 8), g1);
            _mm256_storeu_ps(u.as_mut_ptr().add(i), s0);
            _mm256_storeu_ps(u.as_mut_ptr().add(i + 8), s1);
            i += 16;
        }
    }
    // The row's last few values (a row of the step has none).
    for ((u, g), &b) in u[full..n].iter_mut().zip(&mut g[full..n]).zip(&b[full..n]) {
        (*g, *u) = gelu::value_and_slope(*u + b);
    }
}

/// GELU and its slope of eight values:
/// `t = tanh(C (x + A x^3))`, `0.5 x (1 + t)`,
/// `0.5 (1 + t) + 0.5 x (1 - t^2) C (1 + 3 A x^2)`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn value_and_slope(x: __m256) -> (__m256, __m256) {
    let splat = _mm256_set1_ps;
    let x2 = _mm256_mul_ps(x, x);
    // C x (1 + A x^2) = x (C + C A x^2)
    let inner = _mm256_mul_ps(
        x,
        _mm256_fmadd_ps(splat(gelu::C * gelu::A), x2, splat(gelu::C)),
    );
    let t = tanh(inner);
    let half_x = _mm256_mul_ps(splat(0.5), x);
    let half_one_plus_t = _mm256_fmadd_ps(splat(0.5), t, splat(0.5));
    let value = _mm256_mul_ps(x, half_one_plus_t);
    // (1 - t^2) (C + 3 C A x^2)
    let dt = _mm256_mul_ps(
        _mm256_fnmadd_ps(t, t, splat(1.0)),
        _mm256_fmadd_ps(splat(3.0 * gelu::C * gelu::A), x2, splat(gelu::C)),
    );
    let slope = _mm256_fmadd_ps(half_x, dt, half_one_plus_t);
    (value, slope)
}

/// tanh of eight values: `1 - 2 / (e^(2x) + 1)` (as `fastmath::tanh`;
/// `exp8`'s own clamp keeps `e` finite and non-zero, so `t` is exactly
/// -1 or 1 far out, without a clamp of its own).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tanh(x: __m256) -> __m256 {
    let e = exp8(_mm256_add_ps(x, x));
    let one = _mm256_set1_ps(1.0);
    _mm256_sub_ps(
        one,
        _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, one)),
    )
}

#[cfg(test)]
mod tests {
    /// Within 2e-6 (absolute, and relative for large values) of GELU and
    /// its slope computed in f64, over the range the step sees and beyond.
    #[test]
    fn matches_gelu_in_f64() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("SKIPPED: this CPU has no AVX2 with FMA");
            return;
        }
        let u: Vec<f32> = (0..20_003).map(|i| (i as f32 - 10_000.0) / 700.0).collect();
        let b: Vec<f32> = (0..u.len())
            .map(|i| (i % 5) as f32 / 16.0 - 0.125)
            .collect();
        let mut slope = u.clone();
        let mut g = vec![0f32; u.len()];
        // SAFETY: checked above.
        unsafe { super::bias_gelu_row(&mut slope, &mut g, &b) };
        let (c, a) = ((2.0f64 / std::f64::consts::PI).sqrt(), 0.044715f64);
        for i in 0..u.len() {
            let x = (u[i] + b[i]) as f64;
            let t = (c * (x + a * x * x * x)).tanh();
            let want_g = 0.5 * x * (1.0 + t);
            let want_s = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * a * x * x);
            let tol = |w: f64| 2e-6 * w.abs().max(1.0);
            assert!(
                (g[i] as f64 - want_g).abs() <= tol(want_g),
                "gelu({x}): {} vs {want_g}",
                g[i]
            );
            assert!(
                (slope[i] as f64 - want_s).abs() <= tol(want_s),
                "gelu'({x}): {} vs {want_s}",
                slope[i]
            );
        }
    }
}
