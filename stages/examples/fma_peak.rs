//! The machine's f32 FMA ceiling on one core, to compare the training
//! step's products with (BENCHMARKS.md: gemm and the attention kernels as a
//! share of it): 12 independent chains of 16-lane fused multiply-adds, so
//! that neither latency nor memory limits them.
//!
//! cargo run --release -p vgmake-stages --example fma_peak [-- RUNS]

use std::time::Instant;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        let mut rates: Vec<f64> = (0..runs)
            .map(|_| {
                let steps = 100_000_000u64;
                let start = Instant::now();
                // SAFETY: AVX-512F is there.
                let sum = unsafe { chains(steps) };
                let seconds = start.elapsed().as_secs_f64();
                std::hint::black_box(sum);
                // 12 chains x 16 lanes x 2 flops per step.
                (steps * 12 * 16 * 2) as f64 / seconds / 1e9
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "f32 FMA peak, 1 core, AVX-512: median {:.1} GFLOP/s (min {:.1}, max {:.1}) over {runs} runs",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
        return;
    }
    println!("no AVX-512 here: this probe measures the AVX-512 FMA rate only");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn chains(steps: u64) -> f32 {
    use std::arch::x86_64::*;
    // Opaque to the compiler, which would otherwise fold the loop.
    let (x, y) = std::hint::black_box((_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(-0.000_000_1)));
    let mut acc = std::hint::black_box([_mm512_set1_ps(1.0); 12]);
    for _ in 0..std::hint::black_box(steps) {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}
