//! The three ways to get a training step's loss and gradients give the same
//! numbers: the fused CPU step (`Gpt::train_step`, no autograd), candle's
//! autograd through the fused ops, and candle's autograd through the
//! composite ops (the GPU's path), the last also in bf16. And on each path
//! every parameter learns.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};

use super::Kernels;
use super::model::{Dropout, Gpt, ModelConfig};
use super::ops::testing::on_threads;
use super::rng::Rng;

/// A small model with its parameters as Vars, in `parameter_shapes` order:
/// as initialised, or `perturbed` (gains and biases off their 1 and 0,
/// weights bigger, so that every term of the gradients matters).
fn model(perturbed: bool) -> (Gpt, Vec<(String, Var)>) {
    let config = ModelConfig {
        vocab_size: 13,
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
        .map(|(n, shape, v)| {
            let v = match perturbed {
                true => v.iter().map(|x| 5.0 * x + 0.1 * rng.normal()).collect(),
                false => v,
            };
            (n, Var::from_vec(v, shape, &Device::Cpu).unwrap())
        })
        .collect();
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    (Gpt::from_tensors(config, &tensors).unwrap(), vars)
}

/// Two sequences of 11 ids and their next-token targets.
fn batch() -> (Tensor, Tensor) {
    let all: Vec<u32> = (0..23).map(|i| (i * 7 % 13) as u32).collect();
    let ids = Tensor::from_vec(all[..22].to_vec(), (2, 11), &Device::Cpu).unwrap();
    let targets = Tensor::from_vec(all[1..].to_vec(), 22, &Device::Cpu).unwrap();
    (ids, targets)
}

/// Loss and every parameter's gradient through candle's autograd with
/// `kernels`; the masters' gradients must be f32 whatever the dtype.
fn autograd(
    model: &Gpt,
    vars: &[(String, Var)],
    kernels: Kernels,
    dropout: Option<Dropout>,
) -> (f32, Vec<Vec<f32>>) {
    let (ids, targets) = batch();
    let model = model.clone().with_kernels(kernels);
    let logits = model.forward_flat(&ids, dropout).unwrap();
    let loss = kernels.cross_entropy(&logits, &targets).unwrap();
    assert_eq!(loss.dtype(), DType::F32);
    let grads = loss.backward().unwrap();
    let grads = vars
        .iter()
        .map(|(name, var)| {
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            assert_eq!(g.dtype(), DType::F32, "{name}");
            g.flatten_all().unwrap().to_vec1().unwrap()
        })
        .collect();
    (loss.to_scalar().unwrap(), grads)
}

/// `kernels` through autograd gives the fused step's loss and gradients to
/// rounding, with and without dropout, drawing the same masks.
fn equals_the_fused_step(kernels: Kernels) {
    let (model, vars) = model(true);
    let (ids, targets) = batch();
    for p in [0.0, 0.3] {
        let mut rng_a = Rng::new(9);
        let (loss, grads) = autograd(&model, &vars, kernels, Some(Dropout { rng: &mut rng_a, p }));
        let mut rng_b = Rng::new(9);
        let dropout = Dropout { rng: &mut rng_b, p };
        let (fused_loss, fused) = model.train_step(&ids, &targets, Some(dropout)).unwrap();
        assert_eq!(
            rng_a.state(),
            rng_b.state(),
            "{kernels:?}, p {p}: same draws"
        );
        assert!(
            (loss - fused_loss).abs() < 1e-5,
            "{kernels:?}, p {p}: {loss} vs {fused_loss}"
        );
        assert_eq!(fused.len(), vars.len());
        for ((name, _), (ours, fused)) in vars.iter().zip(grads.iter().zip(&fused)) {
            assert_eq!(ours.len(), fused.len(), "{name}");
            let scale = fused.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (i, (a, b)) in ours.iter().zip(fused).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * scale + 1e-7,
                    "{kernels:?}, p {p}: {name}[{i}]: autograd {a}, fused step {b}"
                );
            }
        }
    }
}

#[test]
fn the_fused_step_equals_autograd_through_the_fused_ops() {
    equals_the_fused_step(Kernels::Fused);
}

/// The GPU's math, checked on every machine.
#[test]
fn the_composite_path_equals_the_fused_step() {
    equals_the_fused_step(Kernels::Composite { dtype: DType::F32 });
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-30)
}

/// bf16 rounds (8 bits of mantissa), so: the same loss to 2% and every
/// gradient pointing the same way, arriving in f32 at the master weights.
#[test]
fn bf16_is_close_to_f32() {
    let (model, vars) = model(true);
    let f32_path = Kernels::Composite { dtype: DType::F32 };
    let bf16_path = Kernels::Composite { dtype: DType::BF16 };
    let (loss32, grads32) = autograd(&model, &vars, f32_path, None);
    let (loss16, grads16) = autograd(&model, &vars, bf16_path, None);
    assert!(
        (loss16 - loss32).abs() < 0.02 * loss32,
        "bf16 loss {loss16}, f32 {loss32}"
    );
    for ((name, _), (a, b)) in vars.iter().zip(grads16.iter().zip(&grads32)) {
        assert!(a.iter().all(|x| x.is_finite()), "{name}");
        let c = cosine(a, b);
        assert!(
            c > 0.99,
            "{name}: cosine {c} between bf16 and f32 gradients"
        );
    }
}

/// On every path (the fused CPU kernels, and the composite ops the GPU runs
/// in f32 and bf16), the initialised model gives every parameter a finite,
/// non-zero gradient: no parameter sits behind an op without a backward.
#[test]
fn every_parameter_receives_a_finite_nonzero_gradient() {
    let (model, vars) = model(false);
    for kernels in [
        Kernels::Fused,
        Kernels::Composite { dtype: DType::F32 },
        Kernels::Composite { dtype: DType::BF16 },
    ] {
        let (_, grads) = autograd(&model, &vars, kernels, None);
        for ((name, _), g) in vars.iter().zip(&grads) {
            assert!(
                g.iter().all(|x| x.is_finite()),
                "{kernels:?}: {name}: not finite"
            );
            assert!(g.iter().any(|&x| x != 0.0), "{kernels:?}: {name}: zero");
        }
    }
}

/// The fused step gives the same bits on 1, 2 and 3 threads, dropout on:
/// every parallel split (row chunks, fixed row blocks for the sums, gemm's
/// split of the output, one task per attention head) keeps each sum's order.
#[test]
fn the_fused_step_does_not_depend_on_the_thread_count() {
    let config = ModelConfig {
        vocab_size: 29,
        d_model: 32,
        layers: 2,
        heads: 2,
        context: 64,
        mlp_hidden: 128,
    };
    let mut rng = Rng::new(3);
    let tensors: HashMap<String, Tensor> = config
        .initial_values(&mut rng)
        .into_iter()
        .map(|(n, shape, v)| (n, Tensor::from_vec(v, shape, &Device::Cpu).unwrap()))
        .collect();
    let model = Gpt::from_tensors(config, &tensors).unwrap();
    let (b, t) = (6, 64);
    let all: Vec<u32> = (0..b * t + 1).map(|i| (i * 11 % 29) as u32).collect();
    let ids = Tensor::from_vec(all[..b * t].to_vec(), (b, t), &Device::Cpu).unwrap();
    let targets = Tensor::from_vec(all[1..].to_vec(), b * t, &Device::Cpu).unwrap();
    let run = |threads: usize| {
        on_threads(threads, || {
            let mut rng = Rng::new(9);
            let dropout = Dropout {
                rng: &mut rng,
                p: 0.1,
            };
            let (loss, grads) = model.train_step(&ids, &targets, Some(dropout)).unwrap();
            let bits: Vec<Vec<u32>> = grads
                .iter()
                .map(|g| g.iter().map(|x| x.to_bits()).collect())
                .collect();
            (loss.to_bits(), bits)
        })
    };
    let one = run(1);
    assert_eq!(one, run(2), "2 threads");
    assert_eq!(one, run(3), "3 threads");
}
