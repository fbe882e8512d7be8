//! Row loops of the kernels, compiled for AVX-512 and AVX2 as well as the
//! baseline and picked at run time (the crate is built for plain x86-64,
//! where these loops get 4-wide SSE). Each loop is elementwise or sums into
//! a fixed set of lanes, and no multiply-add is contracted, so every version
//! gives the same bits.

use super::gelu;
use crate::train::fastmath;

/// Defines `pub fn $name` that runs `$body` with the widest vector unit the
/// CPU has.
macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

const LANES: usize = 16;

dispatch! {
    /// `x = exp(a x - b)` for every element.
    fn exp_affine(xs: &mut [f32], a: f32, b: f32) {
        for x in xs.iter_mut() {
            *x = fastmath::exp(a * *x - b);
        }
    }
}

dispatch! {
    /// `x = s exp(x - b)` for every element.
    fn scaled_exp(xs: &mut [f32], s: f32, b: f32) {
        for x in xs.iter_mut() {
            *x = s * fastmath::exp(*x - b);
        }
    }
}

dispatch! {
    /// The sum of `exp(x - b)` over `xs`, in 16 lanes.
    fn sum_exp(xs: &[f32], b: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let chunks = xs.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for i in 0..LANES {
                acc[i] += fastmath::exp(c[i] - b);
            }
        }
        for (a, &x) in acc.iter_mut().zip(tail) {
            *a += fastmath::exp(x - b);
        }
        reduce(acc)
    }
}

dispatch! {
    /// One row of a residual connection: `o = x + (o + b)`.
    fn residual_row(o: &mut [f32], b: &[f32], x: &[f32]) {
        for ((o, &b), &x) in o.iter_mut().zip(b).zip(x) {
            *o = (*o + b) + x;
        }
    }
}

dispatch! {
    /// One row of a residual connection after dropout: `o = x + m (o + b)`.
    fn residual_row_masked(o: &mut [f32], b: &[f32], m: &[f32], x: &[f32]) {
        for (((o, &b), &m), &x) in o.iter_mut().zip(b).zip(m).zip(x) {
            *o = (*o + b) * m + x;
        }
    }
}

/// One row of the MLP's first layer: `g = gelu(u + b)`, and `u` becomes
/// `gelu'(u + b)`, what the backward needs: the tanh both share is
/// computed once, here, not again in the backward. With AVX2 and FMA, by
/// [`super::gelu_avx2`] (within 2e-6 of the scalar functions' results).
pub fn bias_gelu_row(u: &mut [f32], g: &mut [f32], b: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { super::gelu_avx2::bias_gelu_row(u, g, b) };
    }
    bias_gelu_row_plain(u, g, b)
}

dispatch! {
    /// [`bias_gelu_row`] where the CPU has no AVX2 with FMA: the scalar
    /// functions' bits.
    fn bias_gelu_row_plain(u: &mut [f32], g: &mut [f32], b: &[f32]) {
        // By 64 values, stage by stage (the sums, the tanh, the value and
        // slope): four independent vectors per stage. Value by value, the
        // one long dependent chain of each vector (exp, divide, ...) kept
        // the loop waiting on latencies. The same operations per value.
        const W: usize = 4 * LANES;
        let n = u.len().min(g.len()).min(b.len());
        let full = n - n % W;
        for ((u, g), b) in u[..full]
            .chunks_exact_mut(W)
            .zip(g[..full].chunks_exact_mut(W))
            .zip(b[..full].chunks_exact(W))
        {
            let mut x = [0f32; W];
            for i in 0..W {
                x[i] = u[i] + b[i];
            }
            let mut t = [0f32; W];
            for i in 0..W {
                t[i] = gelu::inner_tanh(x[i]);
            }
            for i in 0..W {
                (g[i], u[i]) = gelu::value_and_slope_with(x[i], t[i]);
            }
        }
        for ((u, g), &b) in u[full..n].iter_mut().zip(g[full..n].iter_mut()).zip(&b[full..n]) {
            (*g, *u) = gelu::value_and_slope(*u + b);
        }
    }
}

dispatch! {
    /// One row of the GELU backward: `du *= slope` (the forward's
    /// `gelu'`), and `sums += du` (the bias gradient's column sums).
    fn gelu_backward_row(du: &mut [f32], slope: &[f32], sums: &mut [f32]) {
        for ((g, &m), s) in du.iter_mut().zip(slope).zip(sums.iter_mut()) {
            *g *= m;
            *s += *g;
        }
    }
}

dispatch! {
    /// `sums += row`, elementwise.
    fn add_row(sums: &mut [f32], row: &[f32]) {
        for (s, &x) in sums.iter_mut().zip(row) {
            *s += x;
        }
    }
}

/// AdamW's elementwise update, for `optimizer.rs`.
pub mod adamw {
    use crate::train::optimizer::{BETA1, BETA2, EPS};

    /// The per-step scalars of the update.
    #[derive(Clone, Copy)]
    pub struct Scalars {
        pub lr: f32,
        pub decay: f32,
        pub clip: f32,
        pub bc1: f32,
        pub bc2: f32,
    }

    dispatch! {
        /// The update of one chunk: writes every `w` from `old`, `g` and the
        /// moments (updated in place). The slices are separate arguments,
        /// not one struct: as arguments they are known not to alias, which
        /// the vectorized loop needs (grouped in a struct the update measured
        /// 10-25% slower).
        fn update_chunk(
            w: &mut [std::mem::MaybeUninit<f32>],
            old: &[f32],
            g: &[f32],
            m: &mut [f32],
            v: &mut [f32],
            s: Scalars
        ) {
            let n = w.len();
            assert!(old.len() == n && g.len() == n && m.len() == n && v.len() == n);
            for ((((w, &old), &g), m), v) in w.iter_mut().zip(old).zip(g).zip(m).zip(v) {
                let g = g * s.clip;
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                let update = (*m / s.bc1) / ((*v / s.bc2).sqrt() + EPS);
                w.write(old - (s.lr * update + s.decay * old));
            }
        }
    }
}

dispatch! {
    /// One LayerNorm row: `y = (x - mean) / sqrt(var + eps) * g + b`.
    fn layer_norm_row(y: &mut [f32], x: &[f32], g: &[f32], b: &[f32], eps: f32) {
        // The zips below stop at the shortest: every `y` must be written.
        debug_assert!(y.len() == x.len() && g.len() == x.len() && b.len() == x.len());
        let (mean, rstd) = row_stats(x, eps);
        for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(g).zip(b) {
            *y = (x - mean) * rstd * g + b;
        }
    }
}

dispatch! {
    /// One LayerNorm row backward: writes (or adds to) `dx` and adds to the
    /// gain and bias gradients `dg` and `db`.
    fn layer_norm_row_backward(
        dx: &mut [f32],
        x: &[f32],
        dy: &[f32],
        g: &[f32],
        dg: &mut [f32],
        db: &mut [f32],
        eps: f32,
        accumulate: bool
    ) {
        let n = x.len();
        // The zips below stop at the shortest: every `dx` must be written.
        debug_assert!([dx.len(), dy.len(), g.len(), dg.len(), db.len()].iter().all(|&l| l == n));
        let (mean, rstd) = row_stats(x, eps);
        let (mut s1, mut s2) = ([0f32; LANES], [0f32; LANES]);
        // Element i goes to lane i % 16. Whole chunks as fixed-size arrays
        // (a variable lane count per chunk kept this loop scalar).
        let full = n - n % LANES;
        for c in (0..full).step_by(LANES) {
            let x: &[f32; LANES] = x[c..c + LANES].try_into().unwrap();
            let dy: &[f32; LANES] = dy[c..c + LANES].try_into().unwrap();
            let g: &[f32; LANES] = g[c..c + LANES].try_into().unwrap();
            let dg: &mut [f32; LANES] = (&mut dg[c..c + LANES]).try_into().unwrap();
            let db: &mut [f32; LANES] = (&mut db[c..c + LANES]).try_into().unwrap();
            for l in 0..LANES {
                let xhat = (x[l] - mean) * rstd;
                let dxhat = dy[l] * g[l];
                s1[l] += dxhat;
                s2[l] += dxhat * xhat;
                dg[l] += dy[l] * xhat;
                db[l] += dy[l];
            }
        }
        for i in full..n {
            let l = i - full;
            let xhat = (x[i] - mean) * rstd;
            let dxhat = dy[i] * g[i];
            s1[l] += dxhat;
            s2[l] += dxhat * xhat;
            dg[i] += dy[i] * xhat;
            db[i] += dy[i];
        }
        let (m1, m2) = (reduce(s1) / n as f32, reduce(s2) / n as f32);
        let terms = dx.iter_mut().zip(x).zip(dy).zip(g);
        if accumulate {
            for (((dx, &x), &dy), &g) in terms {
                let xhat = (x - mean) * rstd;
                *dx += rstd * (dy * g - m1 - xhat * m2);
            }
        } else {
            for (((dx, &x), &dy), &g) in terms {
                let xhat = (x - mean) * rstd;
                *dx = rstd * (dy * g - m1 - xhat * m2);
            }
        }
    }
}

/// Mean and 1 / sqrt(variance + eps) of a row, in lanes.
#[inline(always)]
pub fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            let v = c[l] - mean;
            acc[l] += v * v;
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        let v = x - mean;
        *a += v * v;
    }
    (mean, 1.0 / (reduce(acc) / n + eps).sqrt())
}

/// The sum of `xs` in 16 lanes (vectorizes on any x86-64).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        *a += x;
    }
    reduce(acc)
}

/// The dot product of `a` and `b` (same length), in 16 lanes.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let n = a.len().min(b.len());
    let full = n - n % LANES;
    for c in (0..full).step_by(LANES) {
        for i in 0..LANES {
            acc[i] += a[c + i] * b[c + i];
        }
    }
    for i in full..n {
        acc[i - full] += a[i] * b[i];
    }
    reduce(acc)
}

/// The maximum of `xs` (NEG_INFINITY when empty), in 16 lanes.
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        *a = if x > *a { x } else { *a };
    }
    acc.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

/// Pairwise sum of the lanes, in a fixed order.
#[inline(always)]
fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            acc[i] += acc[i + w];
        }
        w /= 2;
    }
    acc[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lane_sums_and_maxima_are_right() {
        for n in [0, 1, 15, 16, 17, 100] {
            let xs: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0).collect();
            let plain: f32 = xs.iter().sum();
            assert!((sum(&xs) - plain).abs() < 1e-4, "n {n}");
            assert_eq!(
                max(&xs),
                xs.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
            );
            let se: f32 = xs.iter().map(|x| (x - 0.5).exp()).sum();
            assert!((sum_exp(&xs, 0.5) - se).abs() < 1e-4 * (1.0 + se), "n {n}");
        }
    }

    /// The LayerNorm rows sum element `i` into lane `i % 16`, tail
    /// included: the same bits as a loop written element by element.
    #[test]
    fn layer_norm_rows_sum_by_lanes() {
        for n in [5, 16, 100, 256] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
                .collect();
            let dy: Vec<f32> = (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0).collect();
            let g: Vec<f32> = (0..n).map(|i| 1.0 + (i % 5) as f32 / 9.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 3) as f32 / 4.0).collect();
            let eps = 1e-5;
            let mean = sum(&x) / n as f32;
            let mut var = [0f32; LANES];
            for i in 0..n {
                var[i % LANES] += (x[i] - mean) * (x[i] - mean);
            }
            let rstd = 1.0 / (reduce(var) / n as f32 + eps).sqrt();
            let mut y = vec![0f32; n];
            layer_norm_row(&mut y, &x, &g, &b, eps);
            let (mut s1, mut s2) = ([0f32; LANES], [0f32; LANES]);
            let (mut dg_plain, mut db_plain) = (b.clone(), g.clone());
            for i in 0..n {
                let xhat = (x[i] - mean) * rstd;
                assert_eq!(y[i].to_bits(), (xhat * g[i] + b[i]).to_bits(), "n {n}");
                s1[i % LANES] += dy[i] * g[i];
                s2[i % LANES] += dy[i] * g[i] * xhat;
                dg_plain[i] += dy[i] * xhat;
                db_plain[i] += dy[i];
            }
            let (m1, m2) = (reduce(s1) / n as f32, reduce(s2) / n as f32);
            for accumulate in [false, true] {
                let (mut dg, mut db) = (b.clone(), g.clone());
                let mut dx = vec![0.25f32; n];
                layer_norm_row_backward(&mut dx, &x, &dy, &g, &mut dg, &mut db, eps, accumulate);
                for i in 0..n {
                    let xhat = (x[i] - mean) * rstd;
                    let term = rstd * (dy[i] * g[i] - m1 - xhat * m2);
                    let want = if accumulate { 0.25 + term } else { term };
                    assert_eq!(dx[i].to_bits(), want.to_bits(), "n {n} i {i}");
                    assert_eq!(dg[i].to_bits(), dg_plain[i].to_bits());
                    assert_eq!(db[i].to_bits(), db_plain[i].to_bits());
                }
            }
        }
    }

    /// Every dispatched version gives the plain loop's bits.
    #[test]
    fn dispatched_loops_equal_the_plain_ones() {
        let u: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 61.0).collect();
        let mut e = u.clone();
        exp_affine(&mut e, 0.7, 0.2);
        let b: Vec<f32> = (0..u.len()).map(|i| (i % 7) as f32 / 8.0).collect();
        let mut ub = u.clone();
        let mut g = vec![0f32; u.len()];
        bias_gelu_row_plain(&mut ub, &mut g, &b);
        let mut d = vec![1.5f32; u.len()];
        let mut sums = b.clone();
        let slopes: Vec<f32> = u.iter().map(|&u| gelu::slope(u)).collect();
        gelu_backward_row(&mut d, &slopes, &mut sums);
        let mut rows = b.clone();
        add_row(&mut rows, &u);
        for i in 0..u.len() {
            assert_eq!(e[i].to_bits(), fastmath::exp(0.7 * u[i] - 0.2).to_bits());
            assert_eq!(ub[i].to_bits(), gelu::slope(u[i] + b[i]).to_bits());
            assert_eq!(g[i].to_bits(), gelu::value(u[i] + b[i]).to_bits());
            let du = 1.5 * gelu::slope(u[i]);
            assert_eq!(d[i].to_bits(), du.to_bits());
            assert_eq!(sums[i].to_bits(), (b[i] + du).to_bits());
            assert_eq!(rows[i].to_bits(), (b[i] + u[i]).to_bits());
        }
    }
}
