//! Training throughput of the reference configuration (vocabulary 512,
//! d_model 256, 4 layers, 4 heads, context 256, batch 16, f32) on random
//! data, through the real training loop. Prints tokens/s after a warm-up and
//! the peak RSS. `context` and `batch` may be changed (the long-context
//! configuration is context 1024, batch 4); `benches/train_torch.py` is the
//! same model and step in PyTorch, `benches/train_vs_torch.sh` runs both.
//! Flags choose the model size and the device: `--d-model N --layers N
//! --heads N` (the large GPU configuration: 512, 8, 8 with context 1024,
//! batch 32), `--device cuda` (a `--features cuda` build) and `--dtype bf16`;
//! `--path composite` runs the GPU's composite path on the CPU (its tensor
//! ops and the flat AdamW; with `VGMAKE_STEP_PROFILE=1`, each phase's time).
//!
//! cargo run --release -p vgmake-stages --example bench_train -- [threads] [steps] [warmup] [context] [batch] [--device cpu|cuda] [--dtype f32|bf16] [--d-model N] [--layers N] [--heads N] [--path fused|composite]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use vgmake_stages::dataset::{Dataset, Split, Vocab};
use vgmake_stages::train::memory;
use vgmake_stages::train::rng::Rng;
use vgmake_stages::train::settings::Settings;
use vgmake_stages::train::trainer::{Hooks, train};

/// Positional numbers and `--name value` flags.
fn parse_args() -> (Vec<usize>, HashMap<String, String>) {
    let (mut numbers, mut flags) = (Vec::new(), HashMap::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if let Some(name) = arg.strip_prefix("--") {
            let value = args
                .next()
                .unwrap_or_else(|| panic!("--{name} needs a value"));
            flags.insert(name.to_string(), value);
        } else {
            numbers.push(
                arg.parse()
                    .unwrap_or_else(|_| panic!("not a number: {arg}")),
            );
        }
    }
    (numbers, flags)
}

fn main() {
    let (args, flags) = parse_args();
    let flag = |name: &str, default: &str| flags.get(name).cloned().unwrap_or(default.into());
    let size = |name: &str, default: usize| -> usize {
        flag(name, &default.to_string())
            .parse()
            .unwrap_or_else(|_| panic!("--{name} takes a number"))
    };
    let threads = args.first().copied().unwrap_or(2);
    let steps = args.get(1).copied().unwrap_or(10);
    let warmup_steps = args.get(2).copied().unwrap_or(2).max(1);
    let context = args.get(3).copied().unwrap_or(256);
    let batch = args.get(4).copied().unwrap_or(16);
    memory::tune_allocator();

    let vocab_size = 512;
    let mut rng = Rng::new(5);
    let mut split = |n: usize| {
        let mut s = Split::new();
        let ids: Vec<u32> = (0..n)
            .map(|_| 2 + rng.below(vocab_size as u64 - 2) as u32)
            .collect();
        s.push_song(&ids);
        s
    };
    let data = Dataset {
        vocab: Vocab {
            tokens: (0..vocab_size).map(|i| format!("t{i}")).collect(),
            counts: vec![1; vocab_size],
        },
        train: split(200_000),
        val: split(300),
    };
    let settings = Settings {
        d_model: size("d-model", 256),
        layers: size("layers", 4),
        heads: size("heads", 4),
        context,
        dropout: 0.0,
        batch,
        steps: warmup_steps + steps,
        lr: 1e-3,
        warmup: 10,
        weight_decay: 0.1,
        grad_clip: 1.0,
        seed: 1,
        eval_every: 1_000_000,
        eval_tokens: 256,
        checkpoint_every: 1_000_000,
        threads,
        device: flag("device", "cpu"),
        dtype: flag("dtype", "f32"),
        gpu_path_on_cpu: flag("path", "fused") == "composite",
    };
    let state = std::env::temp_dir().join(format!("bench_train-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let marks = Mutex::new(Vec::new());
    let step_done =
        |_: usize, _: usize, _: f64| marks.lock().unwrap().push((Instant::now(), cpu_seconds()));
    let hooks = Hooks {
        cancelled: &|| false,
        log: &|_| {},
        step_done: &step_done,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    if let Err(e) = pool.install(|| train(&settings, &data, &state, &hooks)) {
        eprintln!("bench_train: {e}");
        std::process::exit(1);
    }
    let _ = std::fs::remove_dir_all(&state);

    let marks = marks.into_inner().unwrap();
    let timed = &marks[warmup_steps - 1..];
    let per_step: Vec<f64> = timed
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64())
        .collect();
    // Process CPU time per step (all threads): steadier than the wall clock
    // on a shared machine, but it counts the pool's idle spinning too.
    let cpu_per_step = (timed[timed.len() - 1].1 - timed[0].1) / per_step.len() as f64;
    let mut sorted = per_step.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = sorted[sorted.len() / 2];
    let tokens = (settings.batch * settings.context) as f64;
    let mean = per_step.iter().sum::<f64>() / per_step.len() as f64;
    println!(
        "{} {} d_model {} layers {} heads {} context {context} batch {batch}",
        settings.device, settings.dtype, settings.d_model, settings.layers, settings.heads
    );
    println!(
        "threads {threads}: {} timed steps, median {:.3} s/step = {:.0} tokens/s (mean {:.0} tokens/s), peak RSS {:.0} MiB, CPU {:.3} s/step",
        per_step.len(),
        median,
        tokens / median,
        tokens / mean,
        memory::peak_rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
        cpu_per_step
    );
}

/// CPU seconds used by this process so far, all threads together.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
