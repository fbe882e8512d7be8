//! Broken files: none panics or hangs, each is reported with its reason, and
//! the good files beside them are encoded. Plus a seeded mutation loop over
//! real files (no panic; whatever encodes also round-trips).

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use vgmake_engine::standalone::run as run_standalone;
use vgmake_stages::api::{Input, NoProgress};
use vgmake_stages::data::default_dir as default_data_dir;
use vgmake_stages::midi::{self, DecodeOptions, EncodeOptions};

fn demo_files() -> Vec<PathBuf> {
    let mut files = vgmake_stages::walk::midi_files(&default_data_dir().join("demo")).unwrap();
    files.truncate(12);
    files
        .into_iter()
        .map(|p| default_data_dir().join("demo").join(p))
        .collect()
}

fn good_file() -> Vec<u8> {
    std::fs::read(&demo_files()[0]).unwrap()
}

/// Offsets where the file's chunks and their headers begin and end.
fn section_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut cuts = vec![0, 4, 8, 10, 12, 14];
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        cuts.extend([
            at,
            at + 4,
            at + 8,
            at + 9,
            at + 12,
            at + 8 + len / 2,
            at + 7 + len,
        ]);
        at += 8 + len;
    }
    cuts.retain(|&c| c < bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn smf(tracks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"MThd\0\0\0\x06\0\x01".to_vec();
    out.extend_from_slice(&(tracks.len() as u16).to_be_bytes());
    out.extend_from_slice(&96u16.to_be_bytes());
    for t in tracks {
        out.extend_from_slice(b"MTrk");
        out.extend_from_slice(&(t.len() as u32).to_be_bytes());
        out.extend_from_slice(t);
    }
    out
}

/// The broken corpus: (file name, bytes).
fn broken_files() -> Vec<(String, Vec<u8>)> {
    let good = good_file();
    let mut files = vec![
        ("empty.mid".to_string(), Vec::new()),
        (
            "text.mid".into(),
            b"This is not MIDI, just a text file.\n".to_vec(),
        ),
        (
            "html.mid".into(),
            b"<!DOCTYPE html><html>404</html>".to_vec(),
        ),
        ("wrong_magic.mid".into(), {
            let mut b = good.clone();
            b[..4].copy_from_slice(b"MThx");
            b
        }),
        ("riff_not_rmid.rmi".into(), b"RIFF\x04\0\0\0WAVE".to_vec()),
        ("huge_header_length.mid".into(), {
            let mut b = good.clone();
            b[4..8].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
            b
        }),
        ("huge_track_length.mid".into(), {
            let mut b = good.clone();
            b[18..22].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
            b
        }),
        ("zero_division.mid".into(), {
            let mut b = good.clone();
            b[12..14].copy_from_slice(&[0, 0]);
            b
        }),
        ("no_tracks.mid".into(), good[..14].to_vec()),
    ];
    let mut rng = Rng(42);
    for n in [1usize, 17, 1000, 20_000] {
        let bytes = (0..n).map(|_| rng.next() as u8).collect();
        files.push((format!("random_{n}.mid"), bytes));
    }
    let mut headed: Vec<u8> = good[..14].to_vec();
    headed.extend((0..5000).map(|_| rng.next() as u8));
    files.push(("header_then_random.mid".into(), headed));
    for cut in section_boundaries(&good) {
        files.push((format!("truncated_at_{cut:06}.mid"), good[..cut].to_vec()));
    }
    // Running status without any status first, then 200,000 data bytes.
    let mut abuse = vec![0x00, 60, 100];
    abuse.extend(std::iter::repeat_n([0x00u8, 61, 0], 100_000).flatten());
    files.push(("running_status_no_status.mid".into(), smf(&[abuse])));
    // Deep running status: one note-on status, then 100,000 notes.
    let mut deep = vec![0x00, 0x90, 60, 100];
    for i in 0..100_000u32 {
        deep.extend_from_slice(&[0x01, (i % 128) as u8, if i % 2 == 0 { 0 } else { 90 }]);
    }
    files.push(("running_status_deep.mid".into(), smf(&[deep])));
    // Delta times near 2^28, many of them.
    let mut far = Vec::new();
    for i in 0..2_000u32 {
        far.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0x7F, 0x90, 60 + (i % 12) as u8, 100]);
        far.extend_from_slice(&[0x8F, 0xFF, 0xFF, 0x7F, 0x80, 60 + (i % 12) as u8, 0]);
    }
    files.push(("delta_near_2_28.mid".into(), smf(&[far])));
    // Only meta and sysex events.
    let meta = vec![
        0x00, 0xF0, 0x03, 1, 2, 0xF7, 0x00, 0xFF, 0x03, 0x01, b'x', 0x00, 0xFF, 0x2F, 0,
    ];
    files.push(("no_notes.mid".into(), smf(&[meta])));
    // A sysex claiming more bytes than the track has.
    let sysex = vec![
        0x00, 0x90, 60, 100, 0x10, 0xF0, 0xFF, 0xFF, 0xFF, 0x7F, 1, 2,
    ];
    files.push(("sysex_overrun.mid".into(), smf(&[sysex])));
    files
}

#[test]
fn broken_files_are_skipped_with_reasons_and_good_ones_encoded() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(corpus.join("bad")).unwrap();
    std::fs::create_dir_all(corpus.join("good")).unwrap();
    let broken = broken_files();
    for (name, bytes) in &broken {
        std::fs::write(corpus.join("bad").join(name), bytes).unwrap();
    }
    let good = demo_files();
    for path in &good[..3] {
        std::fs::copy(path, corpus.join("good").join(path.file_name().unwrap())).unwrap();
    }
    let out = tmp.path().join("encode");

    let kind = vgmake_stages::kinds::find("encode").unwrap();
    let input = Input {
        slot: None,
        stage: "scrape".into(),
        kind: "scrape".into(),
        dir: corpus.clone(),
        hashes: Default::default(),
    };
    run_standalone(
        kind,
        &[],
        &[input],
        &out,
        &tmp.path().join("work"),
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .unwrap();
    let report: Json =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), broken.len() + 3);
    let status = |name: &str| -> (String, String) {
        let f = files
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} is in the report"));
        (
            f["status"].as_str().unwrap().to_string(),
            f["reason"].as_str().unwrap_or("").to_string(),
        )
    };
    for f in files
        .iter()
        .filter(|f| f["path"].as_str().unwrap().starts_with("good/"))
    {
        assert_eq!(f["status"], "encoded", "{f}");
    }
    for (name, expect) in [
        ("empty.mid", "empty file"),
        ("text.mid", "not a MIDI file"),
        ("html.mid", "not a MIDI file"),
        ("wrong_magic.mid", "not a MIDI file"),
        ("riff_not_rmid.rmi", "malformed MIDI"),
        ("zero_division.mid", "ticks per quarter note is 0"),
        ("no_tracks.mid", "no track chunk"),
        ("random_1.mid", "not a MIDI file"),
        ("no_notes.mid", "no notes"),
        ("running_status_no_status.mid", "no notes"),
        ("truncated_at_000000.mid", "empty file"),
        // Notes 2^28 ticks apart: millions of beats, a corrupt file.
        ("delta_near_2_28.mid", "song too long"),
    ] {
        let (status, reason) = status(name);
        assert_eq!(status, "skipped", "{name}");
        assert!(reason.contains(expect), "{name}: {reason}");
    }
    for name in ["running_status_deep.mid", "sysex_overrun.mid"] {
        assert_eq!(status(name).0, "encoded", "{name} keeps its readable notes");
    }
    // Every skipped file has a reason.
    for f in files {
        if f["status"] == "skipped" {
            assert!(!f["reason"].as_str().unwrap().is_empty(), "{f}");
        }
    }
    assert_eq!(
        report["encoded"].as_u64().unwrap() + report["skipped"].as_u64().unwrap(),
        files.len() as u64
    );
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len().max(1);
        match rng.below(6) {
            0 => {
                let i = rng.below(len);
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(len);
                if let Some(b) = bytes.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
            2 => {
                let i = rng.below(len + 1).min(bytes.len());
                bytes.insert(i, rng.next() as u8);
            }
            3 if !bytes.is_empty() => {
                bytes.remove(rng.below(len));
            }
            4 => bytes.truncate(rng.below(len + 1)),
            _ => {
                // A random 4-byte big-endian number (a chunk length, say).
                let i = rng.below(len);
                let n = (rng.next() as u32).to_be_bytes();
                for (k, b) in n.iter().enumerate() {
                    if let Some(x) = bytes.get_mut(i + k) {
                        *x = *b;
                    }
                }
            }
        }
    }
}

#[test]
fn mutated_real_files_never_panic_and_still_round_trip() {
    let sources: Vec<Vec<u8>> = demo_files()
        .iter()
        .map(|p: &PathBuf| std::fs::read(Path::new(p)).unwrap())
        .collect();
    let options = EncodeOptions::default();
    let mut rng = Rng(7);
    let (mut encoded, mut skipped) = (0, 0);
    for round in 0..1500 {
        let mut bytes = sources[round % sources.len()].clone();
        mutate(&mut rng, &mut bytes);
        match midi::encode_bytes(&bytes, &options) {
            Ok(line) => {
                encoded += 1;
                let decoded = midi::decode_tokens(&line, &DecodeOptions::default()).unwrap();
                let again = midi::encode_bytes(&decoded, &options).unwrap();
                assert!(again == line, "round {round}: round trip differs");
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                skipped += 1;
            }
        }
    }
    assert!(
        encoded > 500 && skipped > 10,
        "{encoded} encoded, {skipped} skipped"
    );
}
