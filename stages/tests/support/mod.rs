//! What the training tests share: a small corpus with real structure
//! (repeated melodies in the token format of DESIGN.md), tiny settings, and
//! hooks that log nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use vgmake_stages::dataset::{Dataset, Split, Vocab};
use vgmake_stages::train::rng::Rng;
use vgmake_stages::train::settings::Settings;

use tempfile::TempDir;
use vgmake_stages::train::trainer::{Hooks, Outcome, train};

/// Songs of 8 pitches: a random 8-note motif repeated 4 times per song.
pub fn corpus(songs: usize, seed: u64) -> Dataset {
    let mut tokens: Vec<String> = ["<pad>", "<unk>", "start", "finish", "wait:4"]
        .map(String::from)
        .to_vec();
    for p in 60..68 {
        tokens.push(format!("i80:v100:{p}"));
        tokens.push(format!("end:i80:v100:{p}"));
    }
    let mut rng = Rng::new(seed);
    let mut song = || {
        let motif: Vec<u32> = (0..8).map(|_| rng.below(8) as u32).collect();
        let mut ids = vec![2];
        for _ in 0..4 {
            for &p in &motif {
                ids.extend([5 + 2 * p, 4, 6 + 2 * p]);
            }
        }
        ids.push(3);
        ids
    };
    let (mut train, mut val) = (Split::new(), Split::new());
    for i in 0..songs {
        let s = song();
        if i % 5 == 4 {
            val.push_song(&s)
        } else {
            train.push_song(&s)
        }
    }
    let counts = vec![1; tokens.len()];
    Dataset {
        vocab: Vocab { tokens, counts },
        train,
        val,
    }
}

pub fn tiny(steps: usize) -> Settings {
    Settings {
        d_model: 32,
        layers: 2,
        heads: 2,
        context: 48,
        dropout: 0.0,
        batch: 8,
        steps,
        lr: 3e-3,
        warmup: 10,
        weight_decay: 0.01,
        grad_clip: 1.0,
        seed: 7,
        eval_every: 20,
        eval_tokens: 0,
        checkpoint_every: 10,
        threads: 1,
        device: "cpu".into(),
        dtype: "f32".into(),
        gpu_path_on_cpu: false,
    }
}

pub fn quiet<'a>(cancelled: &'a (dyn Fn() -> bool + Sync)) -> Hooks<'a> {
    Hooks {
        cancelled,
        log: &|_| {},
        step_done: &|_, _, _| {},
    }
}

/// A run of `s` uninterrupted, and the same run cancelled before step 26
/// (so the checkpoint of step 20 survives) and resumed, with the resumed
/// run's state folder.
pub fn whole_and_resumed(s: &Settings, data: &Dataset) -> (Outcome, Outcome, TempDir) {
    let a = tempfile::tempdir().unwrap();
    let whole = train(s, data, a.path(), &quiet(&|| false)).unwrap();
    let b = tempfile::tempdir().unwrap();
    let calls = AtomicUsize::new(0);
    let stop = || calls.fetch_add(1, Ordering::Relaxed) >= 25;
    assert!(train(s, data, b.path(), &quiet(&stop)).is_err());
    let resumed = train(s, data, b.path(), &quiet(&|| false)).unwrap();
    assert_eq!(resumed.resumed_from, 20);
    (whole, resumed, b)
}
