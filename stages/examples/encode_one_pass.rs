//! The codec as the encode stage runs it: one pass over a folder of MIDI
//! files (already in memory), on one thread, every song's interned codes
//! kept to the end, in a process that has encoded nothing before and whose
//! allocator is set up as `vgmake`'s is (`tune_allocator`: without it this
//! pass measured 1.27x the warm loop, with it 1.08x). Prints the pass's
//! milliseconds.
//!
//! cargo run --release -p vgmake-stages --example encode_one_pass [-- DIR]
//!
//! `bench_encode` measures the codec's throughput: ten rounds, each song
//! dropped as soon as it is made, so its memory is reused warm. The stage
//! makes each song once and keeps it for the song set; this is that pass
//! alone (no reading, hashing, memo or output), the peer that shows what the
//! engine itself adds (`benches/encode_vs_symusic.sh` prints both).

use std::time::Instant;

use vgmake_stages::midi::{self, EncodeOptions, NoteFormat};

fn main() {
    vgmake_stages::train::memory::tune_allocator();
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus").to_string());
    let files = match vgmake_stages::walk::read_midi_files(std::path::Path::new(&dir)) {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            eprintln!("encode_one_pass: no MIDI files in {dir}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("encode_one_pass: {e}");
            std::process::exit(2);
        }
    };
    let options = EncodeOptions::default();
    let start = Instant::now();
    let songs: Vec<_> = files
        .iter()
        .filter_map(|(_, bytes)| {
            midi::encode_bytes_interned(bytes, &options, NoteFormat::OnOff).ok()
        })
        .collect();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "one pass: {} files, {} songs kept, {ms:.2} ms",
        files.len(),
        std::hint::black_box(songs).len()
    );
}
