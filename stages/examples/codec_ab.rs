//! The codec of another revision beside this tree's, in one process:
//! `benches/codec_ab.sh` puts that revision's `stages/src/midi` in
//! `target/codec_ab/midi` and builds this with `--features codec-ab`.
//!
//! codec_ab DIR ROUNDS [old|new]
//!
//! First checks that both give the same tokens for every file of DIR; then
//! ROUNDS rounds, each timing one pass over the files (read + tokenize to
//! interned codes, files in memory) by each codec, the order swapped every
//! round; prints each one's median and the median of the rounds' own
//! ratios. With `old` or `new` it makes one pass by that codec only (for
//! `valgrind --tool=cachegrind`: instruction counts, which do not move
//! with the machine's load).
//!
//! The other revision's module is compiled inside this example, so its
//! `crate::` paths must resolve here: `walk` is given below; a revision
//! whose codec needs more of the crate does not build.

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../target/codec_ab/midi/mod.rs"]
mod old;
mod walk {
    pub use vgmake_stages::walk::*;
}

use std::time::Instant;

use vgmake_stages::midi as new;

/// A file's song by one codec (`None`: not encoded): the same calls
/// through either module, so that the two sides differ only in the codec.
macro_rules! song_by {
    ($codec:ident, $bytes:expr) => {
        $codec::read_song($bytes).ok().map(|song| {
            let options = $codec::EncodeOptions::default();
            $codec::encoder::encode_song_interned(&song, &options, $codec::NoteFormat::OnOff)
        })
    };
}

/// A file's song by the other revision's codec.
fn by_old(bytes: &[u8]) -> Option<old::encoder::Interned> {
    song_by!(old, bytes)
}

/// A file's song by this tree's codec.
fn by_new(bytes: &[u8]) -> Option<new::encoder::Interned> {
    song_by!(new, bytes)
}

/// One pass over `files` by one codec.
fn pass(files: &[Vec<u8>], old_codec: bool) {
    for bytes in files {
        if old_codec {
            std::hint::black_box(by_old(bytes));
        } else {
            std::hint::black_box(by_new(bytes));
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Stops with a message (exit status 2).
fn fail(message: &str) -> ! {
    eprintln!("codec_ab: {message}");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: codec_ab DIR ROUNDS [old|new]";
    let (Some(dir), Some(rounds)) = (args.get(1), args.get(2).and_then(|r| r.parse().ok())) else {
        fail(usage);
    };
    let rounds: usize = rounds;
    let (paths, files): (Vec<_>, Vec<_>) =
        vgmake_stages::walk::read_midi_files(std::path::Path::new(dir))
            .unwrap_or_else(|e| fail(&e.to_string()))
            .into_iter()
            .unzip();
    if files.is_empty() {
        fail(&format!("no MIDI files in {dir}"));
    }
    match args.get(3).map(String::as_str) {
        Some("old") => return pass(&files, true),
        Some("new") => return pass(&files, false),
        Some(other) => fail(&format!(
            "`{other}`: the side to run is old or new; {usage}"
        )),
        None if rounds == 0 => fail(&format!("ROUNDS must be at least 1; {usage}")),
        None => {}
    }
    for (bytes, path) in files.iter().zip(&paths) {
        let (old_codes, new_codes) = (
            by_old(bytes).map(|s| s.to_codes()),
            by_new(bytes).map(|s| s.to_codes()),
        );
        assert!(
            old_codes == new_codes,
            "{}: the two codecs give different tokens",
            path.display()
        );
    }
    println!("{} files: the same tokens from both codecs", files.len());
    let (mut old_ms, mut new_ms, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut ms = [0.0; 2];
        for turn in 0..2 {
            let old_codec = (round + turn) % 2 == 0;
            let start = Instant::now();
            pass(&files, old_codec);
            ms[old_codec as usize] = start.elapsed().as_secs_f64() * 1e3;
        }
        old_ms.push(ms[1]);
        new_ms.push(ms[0]);
        ratios.push(ms[1] / ms[0]);
    }
    println!(
        "a pass over the files: old {:.2} ms, new {:.2} ms (medians of {rounds}); \
         old / new, median of the rounds' ratios: {:.3}",
        median(old_ms),
        median(new_ms),
        median(ratios)
    );
}
