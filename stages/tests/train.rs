//! The train stage for real: tiny models on small synthetic corpora with
//! real structure (repeated melodies in the token format of DESIGN.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor, Var};
use vgmake_engine::standalone::run as run_standalone;
use vgmake_stages::api::{Input, NoProgress, Value};
use vgmake_stages::dataset::{Dataset, Split, Vocab};
use vgmake_stages::train::ops::cross_entropy;
use vgmake_stages::train::rng::Rng;
use vgmake_stages::train::settings::Settings;
use vgmake_stages::train::trainer::{Hooks, train};
use vgmake_stages::train::{Gpt, ModelConfig, TrainKind};

/// Songs of 8 pitches: a random 8-note motif repeated 4 times per song.
fn corpus(songs: usize, seed: u64) -> Dataset {
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

fn tiny(steps: usize) -> Settings {
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
    }
}

fn quiet<'a>(cancelled: &'a (dyn Fn() -> bool + Sync)) -> Hooks<'a> {
    Hooks {
        cancelled,
        log: &|_| {},
        step_done: &|_, _, _| {},
    }
}

fn weights(params: &[(String, Var)]) -> Vec<Vec<f32>> {
    params
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

#[test]
fn every_parameter_receives_a_finite_nonzero_gradient() {
    let config = ModelConfig {
        vocab_size: 21,
        d_model: 16,
        layers: 2,
        heads: 2,
        context: 12,
        mlp_hidden: 64,
    };
    let mut rng = Rng::new(1);
    let vars: Vec<(String, Var)> = config
        .initial_values(&mut rng)
        .into_iter()
        .map(|(n, shape, v)| (n, Var::from_vec(v, shape, &Device::Cpu).unwrap()))
        .collect();
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let model = Gpt::from_tensors(config, &tensors).unwrap();
    let ids: Vec<u32> = (0..24).map(|i| (i * 7 % 21) as u32).collect();
    let inputs = Tensor::from_vec(ids[..22].to_vec(), (2, 11), &Device::Cpu).unwrap();
    let targets = Tensor::from_vec(ids[2..].to_vec(), 22, &Device::Cpu).unwrap();
    let loss = cross_entropy(&model.forward_flat(&inputs, None).unwrap(), &targets).unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in &vars {
        let g: Vec<f32> = grads
            .get(var)
            .unwrap_or_else(|| panic!("{name}: no gradient"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            g.iter().all(|x| x.is_finite()),
            "{name}: gradient not finite"
        );
        assert!(g.iter().any(|&x| x != 0.0), "{name}: gradient is zero");
    }
}

#[test]
fn a_tiny_model_overfits_one_short_song() {
    let mut data = corpus(1, 3);
    data.val = data.train.clone();
    let mut s = tiny(150);
    s.context = 32;
    s.lr = 1e-2;
    s.weight_decay = 0.0;
    let dir = tempfile::tempdir().unwrap();
    let out = train(&s, &data, dir.path(), &quiet(&|| false)).unwrap();
    let last = out.curve.last().unwrap();
    assert!(last.train_loss < 0.1, "train loss {}", last.train_loss);
}

#[test]
fn interrupted_and_resumed_equals_uninterrupted() {
    let data = corpus(20, 4);
    let s = tiny(40);
    let a = tempfile::tempdir().unwrap();
    let whole = train(&s, &data, a.path(), &quiet(&|| false)).unwrap();

    let b = tempfile::tempdir().unwrap();
    let calls = AtomicUsize::new(0);
    // Cancelled before step 26: the checkpoint at step 20 survives.
    let stop = || calls.fetch_add(1, Ordering::Relaxed) >= 25;
    assert!(train(&s, &data, b.path(), &quiet(&stop)).is_err());
    let resumed = train(&s, &data, b.path(), &quiet(&|| false)).unwrap();
    assert_eq!(resumed.resumed_from, 20);
    assert_eq!(resumed.curve.len(), whole.curve.len());
    for (x, y) in resumed.curve.iter().zip(&whole.curve) {
        assert!(
            (x.train_loss - y.train_loss).abs() < 1e-5,
            "step {}",
            x.step
        );
        assert_eq!(x.val_loss.is_some(), y.val_loss.is_some());
    }
    assert_eq!(weights(&resumed.params), weights(&whole.params));

    // Raising `steps` continues the finished run instead of starting over.
    let longer = train(&tiny(50), &data, b.path(), &quiet(&|| false)).unwrap();
    assert_eq!(longer.resumed_from, 40);
    // (The stored curve went through JSON: equal to the last digit or so.)
    for (x, y) in longer.curve[..40].iter().zip(&resumed.curve) {
        assert!((x.train_loss - y.train_loss).abs() < 1e-9 && x.step == y.step);
    }
    assert_eq!(longer.curve.len(), 50);
}

fn run_stage(
    data: &Dataset,
    overrides: &[(&str, Value)],
) -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let vocab_dir = work.path().join("vocab");
    std::fs::create_dir_all(&vocab_dir).unwrap();
    data.write(&vocab_dir).unwrap();
    let inputs = [Input {
        slot: None,
        stage: "vocab".into(),
        kind: "vocab".into(),
        dir: vocab_dir,
    }];
    let out = work.path().join("out");
    let measured = run_standalone(
        &TrainKind,
        overrides,
        &inputs,
        &out,
        &work.path().join("work"),
        &vgmake_stages::data::default_dir(),
        &NoProgress,
    )
    .unwrap();
    assert!(measured["tokens_per_second"] > 0.0, "{measured:?}");
    (work, out)
}

#[test]
fn the_stage_writes_outputs_beats_the_unigram_and_is_deterministic() {
    let data = corpus(30, 5);
    let o = |k: &'static str, v: i64| (k, Value::Integer(v));
    let overrides = [
        o("d_model", 32),
        o("layers", 2),
        o("heads", 2),
        o("context", 48),
        o("batch", 8),
        o("steps", 60),
        o("warmup", 10),
        o("eval_every", 30),
        o("threads", 1),
        ("lr", Value::Float(3e-3)),
    ];
    let (_w1, out) = run_stage(&data, &overrides);
    for f in [
        "model.safetensors",
        "config.json",
        "metrics.json",
        "curve.csv",
        "curve.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    for key in [
        "val_loss",
        "val_bits_per_token",
        "val_accuracy",
        "unigram_val_loss",
        "bigram_val_loss",
        "steps",
        "parameters",
        "val_bits_per_note",
        "val_top5_accuracy",
    ] {
        assert!(m[key].is_number(), "metrics.json lacks {key}: {m}");
    }
    assert!(
        m["val_loss"].as_f64() < m["unigram_val_loss"].as_f64(),
        "{m}"
    );
    let model = Gpt::load(&out, &Device::Cpu).unwrap();
    assert_eq!(model.config.vocab_size, data.vocab.len());
    let curve = std::fs::read_to_string(out.join("curve.csv")).unwrap();
    assert_eq!(curve.lines().count(), 61);

    let (_w2, again) = run_stage(&data, &overrides);
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(again.join("model.safetensors")).unwrap(),
        "same seed, same weights"
    );
    assert_eq!(
        std::fs::read(out.join("metrics.json")).unwrap(),
        std::fs::read(again.join("metrics.json")).unwrap(),
        "timings are measurements, not part of the output"
    );
}
