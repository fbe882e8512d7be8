//! The training loop: build or restore the model, step AdamW over random
//! windows, evaluate every `eval_every` steps, checkpoint every
//! `checkpoint_every` steps.
//!
//! Resume semantics (what "equal" means):
//! - Same parameters, interrupted at any step (kill -9, Ctrl-C) and run
//!   again: it continues from the last checkpoint and produces the same
//!   weights and curve as a run that was never interrupted (bit for bit:
//!   weights, AdamW moments and the RNG state are restored exactly).
//! - `steps` raised after a finished run: it continues from that run's final
//!   checkpoint under the schedule of the new length. Its curve up to the old
//!   length is the old run's; after it, the cosine follows the new length
//!   (a fresh run of the new length decays differently, so it is not equal).
//!   Killing and resuming the extended run is again exact.
//!
//! On the CPU a step is `Gpt::train_step` (fused, no autograd); on a GPU it
//! is the composite forward (`Kernels::Composite`, f32 or bf16), candle's
//! backward and AdamW on device tensors. Checkpoints hold f32 vectors on
//! both (device and dtype are part of the state's identity, so a run
//! resumes on the device it started on).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{Tensor, Var};

use super::batches::random_batch;
use super::checkpoint::{self, Array, Checkpoint, Meta, Resume};
use super::curve::CurveRow;
use super::evaluate::evaluate;
use super::kernels::Kernels;
use super::model::{Dropout, Gpt, ModelConfig};
use super::optimizer::AdamW;
use super::rng::Rng;
use super::schedule::learning_rate;
use super::settings::Settings;
use crate::api::StageError;
use crate::dataset::Dataset;

/// What the loop reports back to the stage.
pub struct Hooks<'a> {
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
    pub log: &'a (dyn Fn(&str) + Sync),
    /// Called after each step with (steps done, steps).
    pub step_done: &'a (dyn Fn(usize, usize, f64) + Sync),
}

pub struct Outcome {
    pub config: ModelConfig,
    pub params: Vec<(String, Var)>,
    pub curve: Vec<CurveRow>,
    pub resumed_from: usize,
    pub tokens_trained: u64,
    pub train_seconds: f64,
}

fn err(e: impl std::fmt::Display) -> StageError {
    StageError::Other(format!("training: {e}"))
}

/// Detached copies of the parameters (same storage): an evaluation model
/// that records no gradient graph.
pub fn eval_model(config: &ModelConfig, params: &[(String, Var)]) -> Result<Gpt, StageError> {
    let tensors: HashMap<String, Tensor> = params
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect();
    Gpt::from_tensors(config.clone(), &tensors).map_err(err)
}

/// The kernels of the training model: the fused ones on the CPU, the
/// composite ones in the run's dtype on the GPU's path.
pub fn training_kernels(s: &Settings) -> Kernels {
    if s.gpu_path() {
        Kernels::Composite {
            dtype: s.compute_dtype(),
        }
    } else {
        Kernels::Fused
    }
}

/// One array per slot of `opt`, its values from `pick(slot index)`.
fn arrays(opt: &AdamW, mut pick: impl FnMut(usize) -> Vec<f32>) -> Vec<Array> {
    opt.slots
        .iter()
        .enumerate()
        .map(|(i, s)| Array {
            name: s.name.clone(),
            shape: s.var.dims().to_vec(),
            data: pick(i),
        })
        .collect()
}

/// Restores a checkpoint when its arrays fit `config`; `None` otherwise.
fn restored(c: &Checkpoint, config: &ModelConfig) -> Option<()> {
    let shapes = config.parameter_shapes();
    let fits = |arrays: &[Array]| {
        arrays.len() == shapes.len()
            && shapes.iter().all(|(name, shape)| {
                arrays.iter().any(|a| {
                    &a.name == name
                        && &a.shape == shape
                        && a.data.len() == shape.iter().product::<usize>()
                })
            })
    };
    (fits(&c.params) && fits(&c.adam_m) && fits(&c.adam_v)).then_some(())
}

pub fn train(
    s: &Settings,
    data: &Dataset,
    state_dir: &Path,
    hooks: &Hooks,
) -> Result<Outcome, StageError> {
    s.validate().map_err(StageError::Config)?;
    let device = super::device::open(&s.device)?;
    let config = ModelConfig {
        vocab_size: data.vocab.len(),
        d_model: s.d_model,
        layers: s.layers,
        heads: s.heads,
        context: s.context,
        mlp_hidden: 4 * s.d_model,
    };
    if data.train.ids.len() <= s.context {
        return Err(StageError::Input(format!(
            "the training split has {} tokens, not more than `context` = {}: lower `context`",
            data.train.ids.len(),
            s.context
        )));
    }
    if data.val.ids.len() < 2 {
        return Err(StageError::Input(
            "the validation split has fewer than 2 tokens: nothing to evaluate on; raise the vocab stage's `val_fraction` (0 puts no song in it)".into(),
        ));
    }
    let is_note = super::score::note_mask(&data.vocab.tokens);

    let mut resume = checkpoint::choose_resume(state_dir, s.steps, hooks.log);
    if let Resume::Continue(c) | Resume::Extend(c) = &resume {
        if restored(c, &config).is_none() {
            (hooks.log)("ignoring a checkpoint whose arrays do not fit this model");
            resume = Resume::Fresh;
        }
    }
    let mut rng = Rng::new(s.seed);
    let initial = config.initial_values(&mut rng);
    let var = |shape: &[usize], data: Vec<f32>| {
        Var::from_tensor(&Tensor::from_vec(data, shape, &device).map_err(err)?).map_err(err)
    };
    let (checkpoint, start) = match resume {
        Resume::Fresh => (None, 0),
        Resume::Continue(c) => {
            (hooks.log)(&format!("resuming at step {} of {}", c.meta.step, s.steps));
            let step = c.meta.step;
            (Some(c), step)
        }
        Resume::Extend(c) => {
            (hooks.log)(&format!(
                "extending the finished {}-step run to {} steps",
                c.meta.step, s.steps
            ));
            let step = c.meta.step;
            (Some(c), step)
        }
    };
    let find = |arrays: &[Array], name: &str| -> Vec<f32> {
        arrays
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.data.clone())
            .unwrap_or_default()
    };
    let mut params = Vec::new();
    for (name, shape, values) in initial {
        let values = match &checkpoint {
            Some(c) => find(&c.params, &name),
            None => values,
        };
        params.push((name.clone(), var(&shape, values)?));
    }
    let mut opt = match s.gpu_path() {
        true => AdamW::on_tensors(params.clone()),
        false => AdamW::new(params.clone()),
    }
    .map_err(err)?;
    let mut curve = Vec::new();
    let (mut tokens_trained, mut train_seconds) = (0u64, 0f64);
    if let Some(c) = &checkpoint {
        let values = opt
            .slots
            .iter()
            .map(|slot| (find(&c.adam_m, &slot.name), find(&c.adam_v, &slot.name)))
            .collect();
        opt.moments.restore(values).map_err(err)?;
        opt.t = c.meta.adam_t;
        rng =
            Rng::from_state(c.meta.rng).ok_or_else(|| err("checkpoint has an empty RNG state"))?;
        curve = c.meta.curve.clone();
        curve.truncate(start);
        tokens_trained = c.meta.tokens_trained;
        train_seconds = c.meta.train_seconds;
    }

    let tensors: HashMap<String, Tensor> = params
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let model = Gpt::from_tensors(config.clone(), &tensors)
        .map_err(err)?
        .with_kernels(training_kernels(s));
    let eval = eval_model(&config, &params)?;
    let save = |opt: &AdamW, rng: &Rng, curve: &[CurveRow], step: usize, tokens: u64, secs: f64| {
        let mut moments = match opt.moments.values() {
            Ok(moments) => moments,
            Err(e) => {
                (hooks.log)(&format!(
                    "could not write a checkpoint: reading the moments: {e}"
                ));
                return;
            }
        };
        let c = Checkpoint {
            meta: Meta {
                step,
                schedule_steps: s.steps,
                rng: rng.state(),
                adam_t: opt.t,
                curve: curve.to_vec(),
                tokens_trained: tokens,
                train_seconds: secs,
            },
            params: arrays(opt, |i| {
                opt.slots[i]
                    .var
                    .flatten_all()
                    .and_then(|t| t.to_vec1())
                    .unwrap_or_default()
            }),
            adam_m: arrays(opt, |i| std::mem::take(&mut moments[i].0)),
            adam_v: arrays(opt, |i| std::mem::take(&mut moments[i].1)),
        };
        if let Err(e) = checkpoint::save_latest(state_dir, &c) {
            // A lost checkpoint costs time, not correctness.
            (hooks.log)(&format!("could not write a checkpoint: {e}"));
        }
    };

    // VGMAKE_STEP_PROFILE on the composite path: the step's wall time per
    // phase, with the device synchronised at each phase's end.
    let profile_gpu_step = s.gpu_path() && std::env::var_os("VGMAKE_STEP_PROFILE").is_some();
    for step in start..s.steps {
        if (hooks.cancelled)() {
            return Err(StageError::Cancelled);
        }
        let started = Instant::now();
        let lr = learning_rate(step, s.steps, s.warmup, s.lr);
        let batch =
            random_batch(&data.train.ids, s.batch, s.context, &mut rng, &device).map_err(err)?;
        let dropout = (s.dropout > 0.0).then_some(Dropout {
            rng: &mut rng,
            p: s.dropout,
        });
        let (lr32, wd, clip) = (lr as f32, s.weight_decay as f32, s.grad_clip as f32);
        let train_loss = if !s.gpu_path() {
            // Forward and backward in one fused pass each (ops::train_step).
            let (loss, grads) = model
                .train_step(&batch.inputs, &batch.targets, dropout)
                .map_err(err)?;
            opt.step_flat(&grads, lr32, wd, clip).map_err(err)?;
            if step == start {
                // The step's buffers now exist, for every step to reuse.
                super::memory::back_heap_with_huge_pages();
            }
            loss as f64
        } else {
            // The composite path: candle's autograd through ops that all
            // have a backward pass, on the device.
            let logits = model.forward_flat(&batch.inputs, dropout).map_err(err)?;
            let loss = model
                .kernels()
                .cross_entropy(&logits, &batch.targets)
                .map_err(err)?;
            let train_loss = loss.to_scalar::<f32>().map_err(err)? as f64;
            let forward_done = Instant::now();
            let grads = loss.backward().map_err(err)?;
            if profile_gpu_step {
                device.synchronize().map_err(err)?;
            }
            let backward_done = Instant::now();
            opt.step(&grads, lr32, wd, clip).map_err(err)?;
            if profile_gpu_step {
                device.synchronize().map_err(err)?;
                let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
                eprintln!(
                    "step profile (ms, wall, device synchronised): forward {:.2}, backward {:.2}, optimizer {:.2}",
                    ms(started, forward_done),
                    ms(forward_done, backward_done),
                    ms(backward_done, Instant::now())
                );
            }
            train_loss
        };
        train_seconds += started.elapsed().as_secs_f64();
        tokens_trained += (s.batch * s.context) as u64;
        let done = step + 1;
        let mut row = CurveRow {
            step: done,
            lr,
            train_loss,
            val_loss: None,
            val_accuracy: None,
        };
        if done % s.eval_every == 0 || done == s.steps {
            let score =
                evaluate(&eval, &data.val.ids, &is_note, s.batch, s.eval_tokens).map_err(err)?;
            let summary = score.summary();
            row.val_loss = Some(summary.loss);
            row.val_accuracy = Some(summary.accuracy);
            (hooks.log)(&format!(
                "step {done}: train loss {train_loss:.4}, val loss {:.4}, val accuracy {:.4}",
                summary.loss, summary.accuracy
            ));
        }
        curve.push(row);
        if done % s.checkpoint_every == 0 || done == s.steps {
            save(&opt, &rng, &curve, done, tokens_trained, train_seconds);
        }
        (hooks.step_done)(done, s.steps, train_loss);
    }
    Ok(Outcome {
        config,
        params,
        curve,
        resumed_from: start,
        tokens_trained,
        train_seconds,
    })
}
