//! Encode throughput (parse + tokenize, files already in memory) over a
//! folder of MIDI files, on 1 thread and on N threads.
//!
//! cargo run --release -p vgmake-stages --example bench_encode [-- DIR [RUNS [THREADS [FORM]]]]
//!
//! DIR defaults to ../shared/corpus beside the repository; each run encodes every file
//! `ROUNDS` times; the median of RUNS runs is printed. FORM is what a song becomes:
//! `line` (default: the token line as text, `midi::encode_bytes`) or `codes` (the
//! tokens as numbers interned per song, `encode_song_interned`: what the encode
//! stage keeps; the same tokens).

use std::time::Instant;

use rayon::prelude::*;
use vgmake_stages::midi::{self, EncodeOptions};

const ROUNDS: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"),
        |s| s.as_str(),
    );
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    let root = std::path::Path::new(dir);
    let files: Vec<Vec<u8>> = match vgmake_stages::walk::read_midi_files(root) {
        Ok(files) => files.into_iter().map(|(_, bytes)| bytes).collect(),
        Err(e) => {
            eprintln!("bench_encode: {e}");
            std::process::exit(2);
        }
    };
    let bytes: usize = files.iter().map(|f| f.len()).sum();
    let options = EncodeOptions::default();
    let codes = args.get(4).is_some_and(|f| f == "codes");
    let to_codes = |bytes: &[u8]| -> bool {
        midi::encode_bytes_interned(bytes, &options, midi::NoteFormat::OnOff)
            .map(std::hint::black_box)
            .is_ok()
    };
    let tokens: usize = files
        .iter()
        .filter_map(|f| midi::encode_bytes(f, &options).ok())
        .map(|l| l.split(' ').count())
        .sum();
    println!(
        "corpus: {dir}: {} files, {:.1} MB, {} tokens ({:.0} per file)",
        files.len(),
        bytes as f64 / 1e6,
        tokens,
        tokens as f64 / files.len() as f64
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // THREADS picks one thread count; by default 1, 2 and every core.
    let counts: std::collections::BTreeSet<usize> = match args.get(3) {
        Some(n) => n.parse().into_iter().collect(),
        None => [1, 2, cores].into_iter().collect(),
    };
    for threads in counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut rates: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let work: Vec<&Vec<u8>> = (0..ROUNDS).flat_map(|_| files.iter()).collect();
                let ok: usize = pool.install(|| {
                    if codes {
                        work.par_iter()
                            .with_min_len(8)
                            .map(|f| to_codes(f) as usize)
                            .sum()
                    } else {
                        work.par_iter()
                            .with_min_len(8)
                            .map(|f| midi::encode_bytes(f, &options).is_ok() as usize)
                            .sum()
                    }
                });
                std::hint::black_box(ok);
                work.len() as f64 / start.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "{threads} thread(s): median {:.0} files/s (min {:.0}, max {:.0}) over {runs} runs of {} files ({})",
            rates[runs / 2],
            rates[0],
            rates[runs - 1],
            files.len() * ROUNDS,
            if codes { "token codes" } else { "token lines" }
        );
    }
}
