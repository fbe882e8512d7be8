//! limit + vocab on a synthetic 10,000-song encode output, via
//! `run_standalone` (what the engine runs, minus its hashing).
//!
//! cargo run --release -p vgmake-stages --example bench_limit_vocab [-- SONGS MEDIAN_TOKENS RUNS]
//!
//! Song lengths are log-normal (sigma 1) around MEDIAN_TOKENS (default
//! 2000: about 3% of songs over 10,000 tokens), tokens drawn like real
//! lines: notes of a few programs, waits, tempo; seeded, so every run sees
//! the same corpus.

use std::time::Instant;

use vgmake_engine::standalone::run as run_standalone;
use vgmake_stages::api::{Input, NoProgress};
use vgmake_stages::kinds as registry;
use vgmake_stages::songs::{CodecInfo, SongInfo, SongSet};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A standard normal draw (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn song(rng: &mut Rng, tokens: usize) -> String {
    let programs: Vec<u64> = (0..1 + rng.below(6)).map(|_| rng.below(129)).collect();
    let mut line = format!("start tempo:{}", 60 + 10 * rng.below(15));
    let mut sounding: Vec<(u64, u64, u64)> = Vec::new();
    let mut count = 2;
    while count + 2 < tokens {
        match rng.below(10) {
            0..=3 => {
                let p = programs[rng.below(programs.len() as u64) as usize];
                let (v, pitch) = (10 * (1 + rng.below(12)), 30 + rng.below(60));
                line += &format!(" i{p}:v{v}:{pitch}");
                sounding.push((p, v, pitch));
            }
            4..=6 if !sounding.is_empty() => {
                let (p, v, pitch) = sounding.swap_remove(rng.below(sounding.len() as u64) as usize);
                line += &format!(" end:i{p}:v{v}:{pitch}");
            }
            _ => line += &format!(" wait:{}", 1 + rng.below(16) * rng.below(3)),
        }
        count += 1;
    }
    line + " finish"
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let songs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let median: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000.0);
    let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let tmp = std::env::temp_dir().join(format!("vgmake-bench-limit-vocab-{}", std::process::id()));
    let encode = tmp.join("encode");
    std::fs::create_dir_all(&encode).unwrap();
    let mut rng = Rng(2024);
    let lines: Vec<String> = (0..songs)
        .map(|_| {
            let n = (median * rng.normal().exp()).clamp(20.0, 200_000.0) as usize;
            song(&mut rng, n)
        })
        .collect();
    let infos: Vec<SongInfo> = (0..songs)
        .map(|i| SongInfo {
            path: format!("nes/song{i:05}.mid"),
            blake3: blake3::hash(&(i as u64).to_le_bytes()).to_hex().to_string(),
        })
        .collect();
    let codec = CodecInfo::from_options(&Default::default());
    let refs: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
    SongSet::from_lines(&refs, infos, codec)
        .write(&encode)
        .unwrap();
    let tokens: usize = lines.iter().map(|l| l.split(' ').count()).sum();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    println!(
        "corpus: {songs} songs, {tokens} tokens ({:.0} per song), {:.0} MB as text, {:.0} MB as ids",
        tokens as f64 / songs as f64,
        bytes as f64 / 1e6,
        tokens as f64 * 4.0 / 1e6
    );
    let input = |stage: &str, dir: &std::path::Path| Input {
        slot: None,
        stage: stage.into(),
        kind: stage.into(),
        dir: dir.to_path_buf(),
        hashes: Default::default(),
    };
    let (mut limit_s, mut vocab_s, mut total_s) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let limit_out = tmp.join(format!("limit{run}"));
        let vocab_out = tmp.join(format!("vocab{run}"));
        let work = tmp.join(format!("work{run}"));
        let start = Instant::now();
        run_standalone(
            registry::find("limit").unwrap(),
            &[],
            &[input("encode", &encode)],
            &limit_out,
            &work,
            &vgmake_stages::data::default_dir(),
            &NoProgress,
        )
        .unwrap();
        let mid = Instant::now();
        run_standalone(
            registry::find("vocab").unwrap(),
            &[],
            &[input("limit", &limit_out)],
            &vocab_out,
            &work,
            &vgmake_stages::data::default_dir(),
            &NoProgress,
        )
        .unwrap();
        let end = Instant::now();
        limit_s.push((mid - start).as_secs_f64());
        vocab_s.push((end - mid).as_secs_f64());
        total_s.push((end - start).as_secs_f64());
        let _ = std::fs::remove_dir_all(&limit_out);
        let _ = std::fs::remove_dir_all(&vocab_out);
    }
    let median_of = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median of {runs} runs: limit {:.3} s, vocab {:.3} s, limit + vocab {:.3} s (min {:.3}, max {:.3})",
        median_of(&mut limit_s),
        median_of(&mut vocab_s),
        median_of(&mut total_s),
        total_s[0],
        total_s[runs - 1]
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
