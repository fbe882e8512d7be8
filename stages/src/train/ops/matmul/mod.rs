//! The training step's matrix products, `C (m, n) [+]= A (m, k) B (k, n)`
//! for operands given by (row, column) strides: through the `gemm` crate,
//! or through packed products of our own, blocked the BLIS way around a
//! 6 x 16 micro-kernel ([`avx2`]).
//!
//! Where [`product`] takes the packed ones: products of at most `KC` terms
//! ([`one_block`]: the step's `x W` and `dy W^T` with 256 terms), on CPUs
//! with AVX2 and without AVX-512. There, alternated in `gemm_shapes` on a
//! Zen 3, they took 0.82-1.00x the `gemm` crate's time (each tile of `C`
//! summed in registers and written once); with more terms (the weight
//! gradients, `k` = batch x context) they were level with it or slower,
//! and the `gemm` crate keeps those (BENCHMARKS.md).
//!
//! Blocking, from the inside out:
//! - the micro-kernel sums one `6 x 16` tile of `C` over `KC` terms in
//!   registers, from a packed `6 x KC` strip of `A` and a packed `KC x 16`
//!   strip of `B` (16 KiB: stays in L1 while the strips of `A` go by);
//! - a task owns `MC` rows of `C` and packs their `A` block (`MC x KC`,
//!   L2);
//! - the `B` block (`KC x n`) is packed once per `KC` terms, shared by all
//!   tasks.
//!
//! Every element of `C` sums its `k` terms in order: in registers within a
//! `KC` block, added to `C` between blocks. Threads split only the rows of
//! `C`, so a result does not depend on the thread count.

#[cfg(target_arch = "x86_64")]
mod avx2;

use std::cell::RefCell;

use rayon::prelude::*;

use super::attention_kernels::Kernels;
use super::uninit;

thread_local! {
    /// Each thread's packed block of `A`, kept from product to product.
    static A_PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Rows of a micro-tile.
const MR: usize = 6;
/// Columns of a micro-tile: two 8-lane vectors.
const NR: usize = 16;
/// Terms summed in registers before a tile goes back to `C`.
const KC: usize = 256;
/// Floats of packed `B` summed by a row block before the next panel: 4 MiB
/// (a weight matrix of the step at once; a longer `B`, which only the tests
/// and `gemm_shapes` give this module now, in several panels).
const PANEL: usize = 1 << 20;
/// Rows of `C` per `A` block, at most (rounded up to a multiple of `MR`):
/// 96 x 256 floats, 96 KiB.
const MC: usize = 96;

/// Whether this CPU runs the packed products (AVX2 with FMA).
pub fn available() -> bool {
    Kernels::all_available().contains(&Kernels::Avx2)
}

/// Whether [`product`] takes the packed products where they win: on CPUs
/// whose widest build is AVX2 (the attention kernels' detection). With
/// AVX-512 the `gemm` crate keeps every product. `VGMAKE_GEMM=crate` keeps
/// the `gemm` crate (for comparisons; its sums round differently, so a run
/// resumed under the other setting is not bit-identical to an
/// uninterrupted one).
fn packed_preferred() -> bool {
    static PACKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PACKED.get_or_init(|| {
        Kernels::detect() == Some(Kernels::Avx2)
            && std::env::var("VGMAKE_GEMM").as_deref() != Ok("crate")
    })
}

/// Whether a product of `k` terms sums them in one block, in registers,
/// writing each tile of `C` once: where these products beat the `gemm`
/// crate (the step's `x W` for `d_model` 256, 0.82-1.00x its time in
/// `gemm_shapes`); with more terms they were level with it or slower.
pub fn one_block(k: usize) -> bool {
    k <= KC
}

/// An operand: its floats and its (row, column) strides.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub strides: (usize, usize),
}

impl Operand<'_> {
    #[inline]
    fn at(&self, row: usize, col: usize) -> f32 {
        self.data[row * self.strides.0 + col * self.strides.1]
    }
}

/// Which code computes a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The packed products where they win (see the module's doc), else
    /// the `gemm` crate: what the step uses.
    Fastest,
    /// The `gemm` crate, whatever the CPU.
    GemmCrate,
    /// The packed products, whatever the number of terms (needs
    /// [`available`]).
    Packed,
}

/// `c (m x n, row-major) [+]= a (m x k) b (k x n)`, `accumulate` adding to
/// what `c` holds, by the fastest route.
pub fn product(
    c: &mut [f32],
    dims: (usize, usize, usize),
    accumulate: bool,
    a: Operand,
    b: Operand,
) {
    product_by(Route::Fastest, c, dims, accumulate, a, b)
}

/// [`product`] by a given route (for tests and `gemm_shapes`).
pub fn product_by(
    route: Route,
    c: &mut [f32],
    dims: (usize, usize, usize),
    accumulate: bool,
    a: Operand,
    b: Operand,
) {
    check(c, dims, a, b);
    if dims.0 == 0 || dims.1 == 0 {
        return;
    }
    let packed = match route {
        Route::Fastest => one_block(dims.2) && packed_preferred(),
        Route::GemmCrate => false,
        Route::Packed => {
            assert!(available(), "matmul: packed products without AVX2 and FMA");
            true
        }
    };
    if packed {
        packed_unchecked(c, dims, accumulate, a, b)
    } else {
        with_gemm_crate_unchecked(c, dims, accumulate, a, b)
    }
}

/// Panics unless `c` holds `m x n` floats and every element of `a` and `b`
/// that the product addresses lies inside its slice (what the unsafe code
/// below relies on).
fn check(c: &[f32], (m, n, k): (usize, usize, usize), a: Operand, b: Operand) {
    assert!(c.len() >= m * n, "product: destination too small");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let last =
        |(rs, cs): (usize, usize), rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last(a.strides, m, k) < a.data.len(),
        "product: lhs too small"
    );
    assert!(
        last(b.strides, k, n) < b.data.len(),
        "product: rhs too small"
    );
}

/// Threads for one product through the `gemm` crate: the current pool's.
fn parallelism() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// The `gemm` crate's product, after [`check`] (and `m`, `n` > 0).
fn with_gemm_crate_unchecked(
    c: &mut [f32],
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    a: Operand,
    b: Operand,
) {
    let ((a_rs, a_cs), (b_rs, b_cs)) = (a.strides, b.strides);
    // SAFETY: `check` kept every addressed element inside its slice, and
    // `c` is borrowed mutably, so it cannot overlap `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.data.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(),
        )
    }
}

/// The packed product, after [`check`] (and `m`, `n` > 0), on a CPU with
/// AVX2 and FMA.
fn packed_unchecked(
    c: &mut [f32],
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    a: Operand,
    b: Operand,
) {
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let c = &mut c[..m * n];
    let width = n.div_ceil(NR) * NR;
    // Row blocks of at most ~MC rows, as many as a multiple of the thread
    // count so that every thread gets the same share (256 rows: 4 blocks
    // of 64 at 2 threads, not 96 + 96 + 64).
    let threads = rayon::current_num_threads().max(1);
    let tasks = m.div_ceil(MC).max(threads).next_multiple_of(threads);
    let mc = m.div_ceil(tasks).next_multiple_of(MR);
    // A panel of `B`: as many `KC` blocks as fit in PANEL floats (all of a
    // weight matrix), so that each row block of `C` stays in L2 while it
    // sums the panel's blocks.
    let panel = (PANEL / (KC * width)).max(1) * KC;
    let mut b_packed = uninit(width * panel.min(k)); // written by pack_b before any read
    for q0 in (0..k).step_by(panel) {
        let q1 = (q0 + panel).min(k);
        let b_packed = &mut b_packed[..width * (q1 - q0)];
        // In parallel over the strips of every block (a weight matrix is
        // one block: by blocks alone, one thread would pack it alone).
        b_packed
            .par_chunks_mut(width * KC)
            .enumerate()
            .for_each(|(i, block)| {
                let kc = block.len() / width;
                block
                    .par_chunks_mut(kc * NR)
                    .enumerate()
                    .for_each(|(s, strip)| pack_b(strip, b, q0 + i * KC, s * NR, n));
            });
        let b_packed = &*b_packed;
        c.par_chunks_mut(mc * n)
            .enumerate()
            .for_each(|(block_index, c_rows)| {
                let i0 = block_index * mc;
                let rows = c_rows.len() / n;
                // Taken out of the thread's slot, not borrowed in it: a
                // rayon wait inside could run another product here.
                let mut a_packed = A_PACKED.take();
                for (i, b_block) in b_packed.chunks(width * KC).enumerate() {
                    let p0 = q0 + i * KC;
                    let kc = b_block.len() / width;
                    let len = rows.div_ceil(MR) * MR * kc;
                    if a_packed.len() < len {
                        a_packed = uninit(len); // written by pack_a before any read
                    }
                    let a_packed = &mut a_packed[..len];
                    pack_a(a_packed, a, i0, rows, p0, kc);
                    let first = p0 == 0 && !accumulate;
                    block(c_rows, n, a_packed, b_block, kc, first);
                }
                A_PACKED.set(a_packed);
            });
    }
}

/// Packs one strip of `B`: rows `p0..` (as many as `strip` holds, 16
/// floats each), columns `j0..j0 + 16` (zeros past `n`).
fn pack_b(strip: &mut [f32], b: Operand, p0: usize, j0: usize, n: usize) {
    let cols = NR.min(n - j0);
    for (p, row) in strip.chunks_exact_mut(NR).enumerate() {
        if b.strides.1 == 1 {
            let start = (p0 + p) * b.strides.0 + j0;
            row[..cols].copy_from_slice(&b.data[start..start + cols]);
        } else {
            for (j, x) in row[..cols].iter_mut().enumerate() {
                *x = b.at(p0 + p, j0 + j);
            }
        }
        row[cols..].fill(0.0);
    }
}

/// Packs `A`'s rows `i0..i0 + rows`, terms `p0..p0 + kc`, into strips of 6
/// rows, each `kc x 6` contiguous (the last strip padded with zeros).
fn pack_a(out: &mut [f32], a: Operand, i0: usize, rows: usize, p0: usize, kc: usize) {
    for (s, strip) in out.chunks_exact_mut(kc * MR).enumerate() {
        let r0 = s * MR;
        let live = MR.min(rows - r0);
        if a.strides.0 == 1 {
            // A read transposed: the strip's 6 rows are contiguous per term.
            for (p, col) in strip.chunks_exact_mut(MR).enumerate() {
                let start = (p0 + p) * a.strides.1 + i0 + r0;
                col[..live].copy_from_slice(&a.data[start..start + live]);
                col[live..].fill(0.0);
            }
        } else {
            for r in 0..MR {
                if r < live {
                    let row = (i0 + r0 + r) * a.strides.0;
                    for p in 0..kc {
                        strip[p * MR + r] = a.data[row + (p0 + p) * a.strides.1];
                    }
                } else {
                    for p in 0..kc {
                        strip[p * MR + r] = 0.0;
                    }
                }
            }
        }
    }
}

/// One task's rows of `C` (`c_rows`, row stride `n`) against the whole
/// packed `B`: every 16-column strip of `B` (kept in L1) against every
/// 6-row strip of `A`.
fn block(c_rows: &mut [f32], n: usize, a_packed: &[f32], b_packed: &[f32], kc: usize, first: bool) {
    let rows = c_rows.len() / n;
    for (s, b_strip) in b_packed.chunks_exact(kc * NR).enumerate() {
        let j0 = s * NR;
        let cols = NR.min(n - j0);
        for (r, a_strip) in a_packed.chunks_exact(kc * MR).enumerate() {
            let i0 = r * MR;
            let live = MR.min(rows - i0);
            let tile = &mut c_rows[i0 * n + j0..];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA are there (`Route::Packed` checks `available()`,
            // the fastest route comes here only where AVX2 is the widest build); the strips hold
            // `kc` terms each and the tile's `live` rows of `cols` columns
            // lie inside `tile` (row stride `n`).
            unsafe {
                avx2::tile(kc, a_strip, b_strip, tile, n, (live, cols), first)
            };
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("the packed products run only where AVX2 is available");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product summed in order in f64, rounded.
    fn reference(m: usize, n: usize, k: usize, a: Operand, b: Operand) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| a.at(i, p) as f64 * b.at(p, j) as f64).sum();
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Every layout the step uses, with edges in every direction (rows not
    /// a multiple of 6, columns of 16, terms of 256; a `B` of more than one
    /// panel), against an f64 sum, the largest first in one pool (so that
    /// smaller products reuse a thread's packed `A`); accumulating onto an
    /// unrelated `C`; the floats past `m x n` untouched; 1, 2 and 3 threads
    /// give the same bits.
    #[test]
    fn products_match_the_sum_in_every_layout_and_thread_count() {
        if !available() {
            eprintln!("SKIPPED: this CPU has no AVX2 with FMA");
            return;
        }
        let shapes = [
            (9, 1030, 1100),
            (200, 64, 256),
            (100, 33, 513),
            (13, 40, 300),
            (7, 17, 3),
            (1, 1, 1),
        ];
        let mut bits_by_threads = Vec::new();
        for threads in 1..=3 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut bits = Vec::new();
            for &(m, n, k) in &shapes {
                for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
                    let a_data = values(m * k, 1);
                    let b_data = values(k * n, 2);
                    let a = Operand {
                        data: &a_data,
                        strides: if a_t { (1, m) } else { (k, 1) },
                    };
                    let b = Operand {
                        data: &b_data,
                        strides: if b_t { (1, k) } else { (n, 1) },
                    };
                    let want = reference(m, n, k, a, b);
                    let tol = 1e-4 * (k as f32).sqrt();
                    let case = format!("{m}x{n}x{k} a_t {a_t} b_t {b_t}, {threads} threads");
                    // Written whole; 3 floats past it stay as they were.
                    let mut c = vec![f32::NAN; m * n + 3];
                    pool.install(|| product_by(Route::Packed, &mut c, (m, n, k), false, a, b));
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() <= tol, "{case}: {x} vs {y}");
                    }
                    assert!(
                        c[m * n..].iter().all(|x| x.is_nan()),
                        "{case}: wrote past m x n"
                    );
                    let start = values(m * n, 3);
                    let mut sum = start.clone();
                    pool.install(|| product_by(Route::Packed, &mut sum, (m, n, k), true, a, b));
                    for ((x, y), s) in sum.iter().zip(&want).zip(&start) {
                        assert!(
                            (x - (y + s)).abs() <= tol,
                            "{case}, accumulating: {x} vs {}",
                            y + s
                        );
                    }
                    bits.extend(c[..m * n].iter().chain(&sum).map(|x| x.to_bits()));
                }
            }
            bits_by_threads.push(bits);
        }
        assert!(
            bits_by_threads.windows(2).all(|w| w[0] == w[1]),
            "the bits depend on the thread count"
        );
    }
}
