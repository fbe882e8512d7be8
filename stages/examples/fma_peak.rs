//! The machine's f32 FMA ceiling on one core, to compare the training
//! step's products with (BENCHMARKS.md: gemm and the attention kernels as a
//! share of it): 12 independent chains of 16-lane (AVX-512) or 8-lane
//! (AVX2) fused multiply-adds, so
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
    {
        let (name, lanes, probe): (&str, u64, unsafe fn(u64) -> f32) =
            if std::arch::is_x86_feature_detected!("avx512f") {
                ("AVX-512", 16, chains_avx512)
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                ("AVX2", 8, chains_avx2)
            } else {
                println!("no AVX-512 or AVX2 with FMA here: nothing to measure");
                return;
            };
        let mut rates: Vec<f64> = (0..runs)
            .map(|_| {
                let steps = 100_000_000u64;
                let start = Instant::now();
                // SAFETY: the CPU has the probe's instructions.
                let sum = unsafe { probe(steps) };
                let seconds = start.elapsed().as_secs_f64();
                std::hint::black_box(sum);
                // 12 chains x `lanes` lanes x 2 flops per step.
                (steps * 12 * lanes * 2) as f64 / seconds / 1e9
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "f32 FMA peak, 1 core, {name}: median {:.1} GFLOP/s (min {:.1}, max {:.1}) over {runs} runs",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chains_avx2(steps: u64) -> f32 {
    use std::arch::x86_64::*;
    // Opaque to the compiler, which would otherwise fold the loop.
    let (x, y) = std::hint::black_box((_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(-0.000_000_1)));
    let mut acc = std::hint::black_box([_mm256_set1_ps(1.0); 12]);
    for _ in 0..std::hint::black_box(steps) {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut lanes = [0f32; 8];
    let total = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
    // SAFETY: 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
    lanes.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn chains_avx512(steps: u64) -> f32 {
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
