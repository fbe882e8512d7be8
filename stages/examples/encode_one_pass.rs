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
    let root = std::path::Path::new(&dir);
    let files: Vec<Vec<u8>> = match vgmake_stages::walk::midi_files(root) {
        Ok(paths) => paths
            .iter()
            .filter_map(|p| std::fs::read(root.join(p)).ok())
            .collect(),
        Err(e) => {
            eprintln!("encode_one_pass: cannot list {dir}: {e}");
            std::process::exit(2);
        }
    };
    if files.is_empty() {
        eprintln!("encode_one_pass: no MIDI files in {dir}");
        std::process::exit(2);
    }
    let options = EncodeOptions::default();
    let start = Instant::now();
    let songs: Vec<_> = files
        .iter()
        .filter_map(|bytes| midi::read_song(bytes).ok())
        .map(|song| midi::encoder::encode_song_interned(&song, &options, NoteFormat::OnOff))
        .collect();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "one pass: {} files, {} songs kept, {ms:.2} ms",
        files.len(),
        std::hint::black_box(songs).len()
    );
}
