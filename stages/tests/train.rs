//! The train stage for real: tiny models on small synthetic corpora with
//! real structure (repeated melodies in the token format of DESIGN.md).

mod support;

use candle_core::{Device, Var};
use support::{corpus, quiet, tiny, whole_and_resumed};
use vgmake_engine::standalone::run as run_standalone;
use vgmake_stages::api::{Input, NoProgress, Value};
use vgmake_stages::dataset::Dataset;
use vgmake_stages::train::trainer::train;
use vgmake_stages::train::{Gpt, TrainKind};

fn weights(params: &[(String, Var)]) -> Vec<Vec<f32>> {
    params
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
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
    let (whole, resumed, b) = whole_and_resumed(&s, &data);
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
        hashes: Default::default(),
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
