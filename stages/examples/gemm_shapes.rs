//! The training step's matrix products, one by one, in GFLOP/s: through the
//! `gemm` crate and, on AVX2 CPUs, through vgmake's packed products (both
//! as `train::ops::matmul` calls them, row-major operands given by
//! strides), the two alternated rep by rep; beside the machine's FMA peak
//! (`fma_peak`).
//!
//! cargo run --release -p vgmake-stages --example gemm_shapes [-- ROWS THREADS REPS]
//!
//! ROWS is batch x context (default 4,096: the long-context config's
//! 4 x 1,024; the reference config is 16 x 256, the same 4,096).

use std::time::Instant;

use vgmake_stages::train::ops::matmul::{self, Operand, Route};

/// One product `c (m x n) = a (m x k) b (k x n)`, operands row-major
/// unless `a_t` / `b_t` (then read transposed from a `(k, m)` / `(n, k)`
/// buffer, as the step's weight and input gradients do).
struct Shape {
    what: &'static str,
    m: usize,
    n: usize,
    k: usize,
    a_t: bool,
    b_t: bool,
}

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (rows, threads, reps) = (arg(1, 4096), arg(2, 1), arg(3, 7));
    let (d, hidden, vocab) = (256, 1024, 512);
    let shape = |what, m, n, k, a_t, b_t| Shape {
        what,
        m,
        n,
        k,
        a_t,
        b_t,
    };
    let shapes = [
        shape("qkv forward    x W", rows, 3 * d, d, false, false),
        shape("proj forward   x W", rows, d, d, false, false),
        shape("fc forward     x W", rows, hidden, d, false, false),
        shape("mlp_proj fwd   x W", rows, d, hidden, false, false),
        shape("head forward   x W", rows, vocab, d, false, false),
        shape("head dx       dy W^T", rows, d, vocab, false, true),
        shape("mlp_proj dx   dy W^T", rows, hidden, d, false, true),
        shape("fc dx         dy W^T", rows, d, hidden, false, true),
        shape("qkv dx        dy W^T", rows, d, 3 * d, false, true),
        shape("head dW      x^T dy", d, vocab, rows, true, false),
        shape("qkv dW       x^T dy", d, 3 * d, rows, true, false),
        shape("fc dW        x^T dy", d, hidden, rows, true, false),
        shape("mlp_proj dW^T dy^T x", d, hidden, rows, true, false),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut total_flops = 0.0;
    let mut total_seconds = 0.0;
    let mut total_ours = 0.0;
    println!("rows {rows}, {threads} thread(s), median of {reps}");
    for s in &shapes {
        let a: Vec<f32> = (0..s.m * s.k).map(|i| (i % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..s.k * s.n).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut c = vec![0f32; s.m * s.n];
        // (row stride, column stride) of the logical (m, k) and (k, n).
        let (a_rs, a_cs) = if s.a_t { (1, s.m) } else { (s.k, 1) };
        let (b_rs, b_cs) = if s.b_t { (1, s.k) } else { (s.n, 1) };
        let packed = matmul::available();
        let (a_op, b_op) = (
            Operand {
                data: &a,
                strides: (a_rs, a_cs),
            },
            Operand {
                data: &b,
                strides: (b_rs, b_cs),
            },
        );
        let mut ours: Vec<f64> = Vec::new();
        let times: Vec<f64> = (0..reps + 1)
            .map(|_| {
                if packed {
                    let start = Instant::now();
                    pool.install(|| {
                        matmul::product_by(
                            Route::Packed,
                            &mut c,
                            (s.m, s.n, s.k),
                            false,
                            a_op,
                            b_op,
                        )
                    });
                    ours.push(start.elapsed().as_secs_f64());
                }
                let start = Instant::now();
                pool.install(|| {
                    matmul::product_by(Route::GemmCrate, &mut c, (s.m, s.n, s.k), false, a_op, b_op)
                });
                start.elapsed().as_secs_f64()
            })
            .skip(1)
            .collect();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let t = median(times);
        let t_ours = median(ours.split_off(1.min(ours.len())));
        let flops = 2.0 * (s.m * s.n * s.k) as f64;
        total_flops += flops;
        total_seconds += t;
        total_ours += t_ours;
        println!(
            "{:22} {:5} x {:5} x {:5}  gemm {:7.2} ms {:6.1} GFLOP/s  packed {:7.2} ms {:6.1} GFLOP/s  time ratio {:.3}",
            s.what,
            s.m,
            s.n,
            s.k,
            t * 1e3,
            flops / t / 1e9,
            t_ours * 1e3,
            flops / t_ours / 1e9,
            t_ours / t,
        );
        std::hint::black_box(&c);
    }
    println!(
        "all: gemm {:.1} ms, {:.1} GFLOP/s; packed {:.1} ms, {:.1} GFLOP/s; packed / gemm time {:.3}",
        total_seconds * 1e3,
        total_flops / total_seconds / 1e9,
        total_ours * 1e3,
        total_flops / total_ours / 1e9,
        total_ours / total_seconds
    );
}
