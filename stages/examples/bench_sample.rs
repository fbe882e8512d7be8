//! Sampling and rendering speed.
//!
//! 1. Generation of 1,024 tokens from a randomly initialised model of the
//!    reference size (vocabulary 512, d_model 256, 4 layers, 4 heads,
//!    context 1024), through the real generation loop and grammar mask, with
//!    the KV cache and without it (the full forward over the prefix at every
//!    step). The vocabulary has no `finish`, so every run writes all 1,024.
//! 2. Rendering: the chip synth on the bundled demo songs (one thread),
//!    seconds of audio per second of CPU.
//!
//! cargo run --release -p vgmake-stages --example bench_sample -- [runs] [tokens] [no_cache_runs]

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use vgmake_stages::data::default_dir as default_data_dir;
use vgmake_stages::midi::read_song;
use vgmake_stages::sample::generate::{Cached, GenerateOptions, LogitSource, Recompute, generate};
use vgmake_stages::sample::grammar::Grammar;
use vgmake_stages::sample::sampler::SamplingOptions;
use vgmake_stages::sample::score::Score;
use vgmake_stages::sample::synth::{SAMPLE_RATE, render};
use vgmake_stages::train::rng::Rng;
use vgmake_stages::train::{Gpt, ModelConfig};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs = args.first().copied().unwrap_or(5);
    let tokens = args.get(1).copied().unwrap_or(1024);
    let no_cache_runs = args.get(2).copied().unwrap_or(1);

    let model = reference_model();
    let grammar = Grammar::new(&vocabulary(model.config.vocab_size));
    let options = GenerateOptions {
        sampling: SamplingOptions::default(),
        max_tokens: tokens,
    };
    let time = |source: &mut dyn LogitSource| {
        let start = Instant::now();
        let song = generate(source, &grammar, &[], &options, &mut Rng::new(1)).unwrap();
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(song.tokens - song.closed, tokens);
        (tokens - 1) as f64 / seconds
    };
    println!(
        "generation: {tokens} tokens, vocab 512, d_model 256, 4 layers, 4 heads, context 1024"
    );
    let cached: Vec<f64> = (0..runs).map(|_| time(&mut Cached::new(&model))).collect();
    let with = report("with KV cache", cached);
    let recomputed: Vec<f64> = (0..no_cache_runs)
        .map(|_| time(&mut Recompute::new(&model)))
        .collect();
    let without = report("without cache", recomputed);
    println!("speed-up: {:.1}x", with / without);

    render_speed(runs);
}

/// Prints the runs and returns the median tokens/s.
fn report(what: &str, mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let all: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
    println!(
        "  {what}: median {median:.1} tokens/s (runs: {})",
        all.join(", ")
    );
    median
}

fn reference_model() -> Gpt {
    let config = ModelConfig {
        vocab_size: 512,
        d_model: 256,
        layers: 4,
        heads: 4,
        context: 1024,
        mlp_hidden: 1024,
    };
    let mut rng = Rng::new(3);
    let tensors: HashMap<String, Tensor> = config
        .initial_values(&mut rng)
        .into_iter()
        .map(|(name, shape, values)| (name, Tensor::from_vec(values, shape, &Device::Cpu).unwrap()))
        .collect();
    Gpt::from_tensors(config, &tensors).unwrap()
}

/// `size` real tokens: specials, `start`, waits, tempos, then note starts and
/// ends for a few programs; no `finish`.
fn vocabulary(size: usize) -> Vec<String> {
    let mut v: Vec<String> = vec!["<pad>".into(), "<unk>".into(), "start".into()];
    v.extend((1..=16).map(|n| format!("wait:{n}")));
    v.extend((8..=20).map(|n| format!("tempo:{}", n * 10)));
    'fill: for program in [80, 81, 33, 0, 128] {
        for pitch in 36..96 {
            for text in [
                format!("i{program}:v100:{pitch}"),
                format!("end:i{program}:v100:{pitch}"),
            ] {
                if v.len() == size {
                    break 'fill;
                }
                v.push(text);
            }
        }
    }
    v
}

/// Seconds of audio per second of CPU, rendering the demo songs on this
/// thread (median of `runs`).
fn render_speed(runs: usize) {
    let mut scores = Vec::new();
    for group in ["freedoom1", "freedoom2"] {
        let dir = default_data_dir().join("demo").join(group);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for path in files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "mid"))
        {
            if let Ok(song) = read_song(&std::fs::read(&path).unwrap()) {
                scores.push(Score::from_midi(&song));
            }
        }
    }
    let notes: usize = scores.iter().map(|s| s.notes.len()).sum();
    let mut rates = Vec::new();
    let mut audio = 0.0;
    for _ in 0..runs {
        let start = cpu_seconds();
        audio = scores.iter().map(|s| render(s).len() as f64).sum::<f64>() / SAMPLE_RATE as f64;
        rates.push(audio / (cpu_seconds() - start));
    }
    rates.sort_by(f64::total_cmp);
    let all: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "rendering: {} songs, {notes} notes, {audio:.0} s of audio: median {:.0}x real time on one thread (runs: {})",
        scores.len(),
        rates[rates.len() / 2],
        all.join(", ")
    );
}

/// CPU time of this thread.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
