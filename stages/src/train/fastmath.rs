//! `exp` and `tanh` that the compiler can vectorize (libm's are scalar
//! calls), accurate to a few ulp, for the softmax, GELU and cross-entropy
//! kernels.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two (Cody-Waite) so that `x - n ln2` is exact enough.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// e^x for x in about [-87, 88] (clamped outside; relative error < 3e-7).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // e^x = 2^n * e^(f ln2), n an integer, f in [-0.5, 0.5).
    let n = floor(x * LOG2E + 0.5);
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor series of e^r, |r| <= 0.347: degree 7 leaves < 1e-8.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n from n's bits in `n + ROUNDER` (the same as `(n as i32 + 127) << 23`).
    let biased = (n + ROUNDER)
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    p * scale
}

/// 1.5 * 2^23: adding it rounds an f32 of magnitude < 2^22 to an integer,
/// which then sits in the low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;

/// `y.floor()` for |y| < 2^22, exactly, in plain float arithmetic: libm's
/// `floorf` (x86-64 without SSE4.1) and a saturating `as i32` both keep the
/// loops that call `exp` from being vectorized.
#[inline(always)]
fn floor(y: f32) -> f32 {
    let nearest = (y + ROUNDER) - ROUNDER;
    if nearest > y { nearest - 1.0 } else { nearest }
}

/// tanh(x) through e^(2x); absolute error < 1e-6.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x.clamp(-20.0, 20.0));
    1.0 - 2.0 / (e + 1.0)
}

/// Checks a vector exp of `L` lanes (the attention's and GELU's) against
/// libm's on -100..100, clamped as [`exp`] clamps: within 5e-7 relative.
#[cfg(test)]
pub(crate) fn assert_lanes_match_libm<const L: usize>(exp_lanes: impl Fn([f32; L]) -> [f32; L]) {
    let mut x = -100.0f32;
    while x < 100.0 {
        let xs: [f32; L] = std::array::from_fn(|l| x + l as f32 * 0.0013);
        for (o, x) in exp_lanes(xs).into_iter().zip(xs) {
            let want = x.clamp(-87.0, 88.0).exp();
            assert!((o - want).abs() <= 5e-7 * want, "exp({x}): {o} vs {want}");
        }
        x += 0.0137 * L as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = (exp(x) - x.exp()).abs() / x.exp();
            assert!(
                rel < 5e-7,
                "exp({x}): {} vs {} (rel {rel})",
                exp(x),
                x.exp()
            );
            x += 0.0137;
        }
        assert_eq!(exp(-1e9), exp(-87.0));
        assert!(exp(1e9).is_finite());
    }

    /// The float-only floor and 2^n give the same bits as the plain formula
    /// (so trained models do not change).
    #[test]
    fn exp_equals_the_plain_formula() {
        let plain = |x: f32| {
            let x = x.clamp(-87.0, 88.0);
            let n = (x * LOG2E + 0.5).floor();
            let r = x - n * LN2_HI - n * LN2_LO;
            let p = 1.0
                + r * (1.0
                    + r * (0.5
                        + r * (1.0 / 6.0
                            + r * (1.0 / 24.0
                                + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
            p * f32::from_bits(((n as i32 + 127) as u32) << 23)
        };
        let mut x = -100.0f32;
        while x < 100.0 {
            assert_eq!(exp(x).to_bits(), plain(x).to_bits(), "exp({x})");
            x += 0.0013;
        }
    }

    #[test]
    fn floor_matches_std() {
        let mut y = -200.0f32;
        while y < 200.0 {
            assert_eq!(floor(y), y.floor(), "floor({y})");
            y += 0.037;
        }
        for y in [
            -1.0f32, -0.0, 0.0, 1.0, -126.5, 127.5, -0.5, 0.5, 1.5, -1.5, 2.5,
        ] {
            assert_eq!(floor(y), y.floor(), "floor({y})");
        }
    }

    #[test]
    fn tanh_matches_libm() {
        let mut x = -30.0f32;
        while x < 30.0 {
            assert!((tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
            x += 0.0071;
        }
    }
}
