//! After a build, changing `limit.max_events` on a 10,000-song corpus must
//! rerun limit and vocab in under 1 s in total, with encode cached.
//!
//! Writes 10,000 synthetic MIDI files (melodies with chords and drums,
//! lengths log-normal around ~2,000 tokens), builds up to `vocab` once, then
//! times five builds that each change `limit.max_events` to a value not seen
//! before, through the real binary. Prints the median of the whole command
//! and of the two stages' own seconds.
//!
//! Run: `cargo bench --bench limit_rerun`

use std::process::Command;
use std::time::Instant;

const SONGS: usize = 10_000;

fn main() {
    let bin = env!("CARGO_BIN_EXE_vgmake");
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..SONGS {
        std::fs::write(
            corpus.join(format!("song{i:05}.mid")),
            synthetic_song(&mut rng),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("pipeline.toml"),
        "[stages.scrape]\nsource = \"corpus\"\n[stages.encode]\ndeps = [\"scrape\"]\n\
         [stages.limit]\ndeps = [\"encode\"]\n[stages.vocab]\ndeps = [\"limit\"]\n",
    )
    .unwrap();
    let start = Instant::now();
    let first = Command::new(bin)
        .args(["build", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    println!(
        "first build of {SONGS} songs: {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let mut wall = Vec::new();
    let mut stages = Vec::new();
    for max_events in [9000, 8000, 7000, 6000, 5000] {
        let start = Instant::now();
        let out = Command::new(bin)
            .args([
                "build",
                "--json",
                "--set",
                &format!("limit.max_events={max_events}"),
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        wall.push(start.elapsed().as_secs_f64());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut seconds = 0.0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match (v["name"].as_str().unwrap(), v["status"].as_str().unwrap()) {
                ("encode" | "scrape", status) => assert_eq!(status, "cached"),
                ("limit" | "vocab", status) => {
                    assert_eq!(status, "ran");
                    seconds += v["seconds"].as_f64().unwrap();
                }
                _ => {}
            }
        }
        stages.push(seconds);
    }
    for stage in ["limit", "vocab"] {
        let show = Command::new(bin)
            .args(["show", stage, "--json", "--set", "limit.max_events=5000"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        let last = v["log"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|l| l.as_str())
            .unwrap_or("");
        println!("last run of {stage}: {last}");
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "limit.max_events changed, {SONGS} songs: limit + vocab {:.3} s (median of 5; stage seconds), whole `vgmake build` {:.3} s (target < 1 s)",
        median(&mut stages),
        median(&mut wall)
    );
}

/// A format-0 MIDI file: a melody over chords with a drum beat; the number
/// of bars is log-normal so that songs span a wide range of token counts.
fn synthetic_song(rng: &mut u64) -> Vec<u8> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let normal = {
        let (a, b) = (
            (next() % 10_000) as f64 / 10_000.0,
            (next() % 10_000) as f64 / 10_000.0,
        );
        (-2.0 * (a + 1e-9).ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    };
    let bars = ((40.0 * (0.7 * normal).exp()) as usize).clamp(2, 600);
    let mut events: Vec<(u32, [u8; 3])> = Vec::new(); // (tick, message)
    let tpq = 96u32;
    let program = (next() % 100) as u8;
    for bar in 0..bars as u32 {
        let t0 = bar * 4 * tpq;
        let root = 48 + (next() % 12) as u8;
        for (i, step) in [0u8, 4, 7].iter().enumerate() {
            let pitch = root + step;
            events.push((t0 + i as u32, [0x91, pitch, 70]));
            events.push((t0 + 4 * tpq - 1, [0x81, pitch, 0]));
        }
        for beat in 0..8u32 {
            let t = t0 + beat * tpq / 2;
            let pitch = 60 + (next() % 24) as u8;
            events.push((t, [0x90, pitch, 60 + (next() % 60) as u8]));
            events.push((t + tpq / 2 - 1, [0x80, pitch, 0]));
            events.push((t, [0x99, if beat % 2 == 0 { 36 } else { 38 }, 100]));
            events.push((t + 10, [0x89, if beat % 2 == 0 { 36 } else { 38 }, 0]));
        }
    }
    events.sort_by_key(|(t, m)| (*t, m[0] & 0xf0 != 0x80));
    let mut track = vec![0x00, 0xC0, program, 0x00, 0xC1, 0];
    let mut now = 0;
    for (t, msg) in events {
        write_vlq(&mut track, t - now);
        track.extend_from_slice(&msg);
        now = t;
    }
    track.extend_from_slice(&[0x00, 0xFF, 0x2F, 0x00]);
    let mut file = b"MThd\0\0\0\x06\0\0\0\x01".to_vec();
    file.extend_from_slice(&(tpq as u16).to_be_bytes());
    file.extend_from_slice(b"MTrk");
    file.extend_from_slice(&(track.len() as u32).to_be_bytes());
    file.extend_from_slice(&track);
    file
}

fn write_vlq(out: &mut Vec<u8>, mut value: u32) {
    let mut bytes = vec![(value & 0x7f) as u8];
    value >>= 7;
    while value > 0 {
        bytes.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.extend(bytes.iter().rev());
}
