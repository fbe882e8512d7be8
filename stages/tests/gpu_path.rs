//! The GPU's training loop, run on the CPU (`Settings::gpu_path_on_cpu`):
//! composite kernels with autograd, AdamW on tensors, checkpoints and
//! resume. It must learn as well as the fused CPU loop from the same key
//! (equal quality, not equal bits), in f32 and bf16. The per-step math is
//! checked in `src/train/step_equivalence.rs`.

mod support;

use support::{corpus, quiet, tiny, whole_and_resumed};
use vgmake_stages::train::settings::Settings;
use vgmake_stages::train::trainer::{Outcome, train};

/// `tiny` with dropout (so the masks' order matters too) on either path.
fn settings(steps: usize, gpu_path: bool) -> Settings {
    Settings {
        dropout: 0.1,
        gpu_path_on_cpu: gpu_path,
        ..tiny(steps)
    }
}

fn weights(o: &Outcome) -> Vec<Vec<f32>> {
    o.params
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

#[test]
fn the_gpu_path_learns_as_well_as_the_fused_one() {
    let data = corpus(30, 5);
    let val_loss = |s: &Settings| {
        let dir = tempfile::tempdir().unwrap();
        let out = train(s, &data, dir.path(), &quiet(&|| false)).unwrap();
        out.curve.last().unwrap().val_loss.unwrap()
    };
    let fused = val_loss(&settings(60, false));
    let composite = val_loss(&settings(60, true));
    let bf16 = val_loss(&Settings {
        dtype: "bf16".into(),
        ..settings(60, true)
    });
    eprintln!("val loss: fused {fused}, composite f32 {composite}, composite bf16 {bf16}");
    // Untrained, the loss is about ln(21) = 3.0 nats.
    assert!(fused < 2.0, "fused {fused}");
    for (name, loss) in [("composite f32", composite), ("composite bf16", bf16)] {
        assert!(
            (loss - fused).abs() < 0.05 * fused,
            "{name}: val loss {loss}, fused {fused}"
        );
    }
}

#[test]
fn the_gpu_path_resumes_exactly() {
    let data = corpus(20, 4);
    let s = settings(30, true);
    let (whole, resumed, _state) = whole_and_resumed(&s, &data);
    assert_eq!(weights(&resumed), weights(&whole));
}

#[test]
fn bf16_on_the_cpu_is_refused_at_validation() {
    let s = Settings {
        dtype: "bf16".into(),
        ..tiny(1)
    };
    let err = s.validate().unwrap_err();
    assert!(err.contains("device = \"cuda\""), "{err}");
}
