//! AdamW (decoupled weight decay) with global-norm gradient clipping. On
//! the CPU the moments are plain f32 vectors: the state is easy to
//! checkpoint and the update is one fused loop per parameter instead of a
//! dozen tensor ops. On other devices they are flat tensors there, updated
//! for all parameters at once (`moments`).

use candle_core::{Result, Storage, Tensor, Var};
use rayon::prelude::*;

use super::moments::{FlatMoments, HostMoments, Moments, UpdateScalars};
use super::ops::adamw;

/// Elements per parallel task of the update.
const CHUNK: usize = 32_768;

/// Runs `f` on the f32 data of a contiguous tensor: in place on the CPU, a
/// copy from other devices (for the host update of a test on CPU tensors).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        drop(storage);
        return Ok(f(&t.flatten_all()?.to_vec1::<f32>()?));
    };
    let data = cpu.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(f(&data[start..end])),
        None => candle_core::bail!("the optimizer needs contiguous tensors"),
    }
}

pub const BETA1: f32 = 0.9;
pub const BETA2: f32 = 0.95;
pub const EPS: f32 = 1e-8;

/// One parameter.
pub struct Slot {
    pub name: String,
    pub var: Var,
    /// Weight decay applies to matrices (weights, embeddings), not to biases
    /// and LayerNorm gains.
    pub decay: bool,
}

pub struct AdamW {
    pub slots: Vec<Slot>,
    /// The moment estimates of every slot.
    pub moments: Moments,
    /// Updates done so far (for bias correction).
    pub t: u64,
}

/// What one step did, for the log.
pub struct StepStats {
    pub grad_norm: f32,
}

impl AdamW {
    /// Moments beside the weights: vectors on the CPU, tensors elsewhere.
    pub fn new(params: Vec<(String, Var)>) -> Result<Self> {
        Self::build(params, false)
    }

    /// Moments as tensors even on the CPU: the GPU's update, testable here.
    pub fn on_tensors(params: Vec<(String, Var)>) -> Result<Self> {
        Self::build(params, true)
    }

    fn build(params: Vec<(String, Var)>, on_tensors: bool) -> Result<Self> {
        let slots: Vec<Slot> = params
            .into_iter()
            .map(|(name, var)| Slot {
                decay: var.rank() >= 2,
                name,
                var,
            })
            .collect();
        let vars: Vec<(&Var, bool)> = slots.iter().map(|s| (&s.var, s.decay)).collect();
        let moments = Moments::zeros(&vars, on_tensors)?;
        Ok(AdamW {
            slots,
            moments,
            t: 0,
        })
    }

    /// Applies one update from `grads`; a parameter without a gradient is an
    /// error (every parameter must learn).
    pub fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f32,
        weight_decay: f32,
        grad_clip: f32,
    ) -> Result<StepStats> {
        let mut all = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let g = grads.get(slot.var.as_tensor()).ok_or_else(|| {
                candle_core::Error::Msg(format!("`{}` got no gradient", slot.name))
            })?;
            all.push(g.contiguous()?);
        }
        let sum = match &mut self.moments {
            Moments::Flat(flat) => {
                let (sum, g) = FlatMoments::flatten(&all)?;
                let (clip, bc1, bc2) = corrections(&mut self.t, sum, grad_clip)?;
                let vars: Vec<&Var> = self.slots.iter().map(|s| &s.var).collect();
                let scalars = UpdateScalars {
                    lr,
                    decay: lr * weight_decay,
                    clip,
                    bc1,
                    bc2,
                };
                flat.update(&vars, &g, scalars)?;
                sum
            }
            Moments::Host(host) => {
                let mut sum = 0f64;
                for g in &all {
                    with_f32(g, |g| sum = add_squares(sum, g))?;
                }
                let (clip, bc1, bc2) = corrections(&mut self.t, sum, grad_clip)?;
                for ((slot, g), moments) in self.slots.iter().zip(all).zip(host) {
                    with_f32(&g, |g| {
                        update(slot, moments, g, lr, weight_decay, clip, bc1, bc2)
                    })??;
                }
                sum
            }
        };
        Ok(StepStats {
            grad_norm: sum.sqrt() as f32,
        })
    }

    /// [`AdamW::step`] with the gradients as vectors, in slot order (what
    /// `Gpt::train_step` returns). Same arithmetic, same bits.
    pub fn step_flat(
        &mut self,
        grads: &[Vec<f32>],
        lr: f32,
        weight_decay: f32,
        grad_clip: f32,
    ) -> Result<StepStats> {
        if grads.len() != self.slots.len() {
            candle_core::bail!(
                "{} gradients for {} parameters",
                grads.len(),
                self.slots.len()
            );
        }
        for (slot, g) in self.slots.iter().zip(grads) {
            if g.len() != slot.var.elem_count() {
                candle_core::bail!(
                    "`{}`: gradient of {} values for {}",
                    slot.name,
                    g.len(),
                    slot.var.elem_count()
                );
            }
        }
        let Moments::Host(host) = &mut self.moments else {
            candle_core::bail!("the update from vectors needs host moments");
        };
        let sum = grads.iter().fold(0f64, |s, g| add_squares(s, g));
        let (clip, bc1, bc2) = corrections(&mut self.t, sum, grad_clip)?;
        for ((slot, g), moments) in self.slots.iter().zip(grads).zip(host) {
            update(slot, moments, g, lr, weight_decay, clip, bc1, bc2)?;
        }
        Ok(StepStats {
            grad_norm: sum.sqrt() as f32,
        })
    }
}

/// Checks the norm from the sum of squares, counts the step in `t`;
/// returns the clip factor and the two bias corrections.
fn corrections(t: &mut u64, sum: f64, grad_clip: f32) -> Result<(f32, f32, f32)> {
    let norm = sum.sqrt() as f32;
    if !norm.is_finite() {
        candle_core::bail!("the gradient is not finite (norm {norm}): lower `lr`");
    }
    let clip = if grad_clip > 0.0 && norm > grad_clip {
        grad_clip / norm
    } else {
        1.0
    };
    *t += 1;
    let bc1 = 1.0 - BETA1.powi(*t as i32);
    let bc2 = 1.0 - BETA2.powi(*t as i32);
    Ok((clip, bc1, bc2))
}

/// `sum` plus the squares of `g`, in f64: element `i` goes to running sum
/// `i % 8`, and the eight are added in order at the end. One running sum
/// was a chain of dependent adds, 3 ms a step at the benchmark's 3.7 M
/// parameters; eight run side by side (the norm may differ from the single
/// sum's in its last f64 bits, far below the f32 it is used as).
fn add_squares(sum: f64, g: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0f64; LANES];
    let chunks = g.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l] as f64 * c[l] as f64;
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        *a += x as f64 * x as f64;
    }
    acc.iter().fold(sum, |s, &a| s + a)
}

/// One slot's AdamW update from its gradient `g`.
#[allow(clippy::too_many_arguments)]
fn update(
    slot: &Slot,
    moments: &mut HostMoments,
    g: &[f32],
    lr: f32,
    weight_decay: f32,
    clip: f32,
    bc1: f32,
    bc2: f32,
) -> Result<()> {
    let decay = if slot.decay { lr * weight_decay } else { 0.0 };
    let HostMoments { m, v } = moments;
    let weights = slot.var.as_tensor().contiguous()?;
    let mut w = Vec::new();
    with_f32(&weights, |old| {
        // Written whole below (a zero fill was one more pass).
        w = Vec::with_capacity(old.len());
        let (m, v) = (&mut m[..], &mut v[..]);
        let s = adamw::Scalars {
            lr,
            decay,
            clip,
            bc1,
            bc2,
        };
        // Elementwise, so the result is the same for any split.
        w.spare_capacity_mut()
            .par_chunks_mut(CHUNK)
            .zip(old.par_chunks(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|(((w, old), g), (m, v))| adamw::update_chunk(w, old, g, m, v, s));
        // SAFETY: the chunks above cover the whole capacity (`old.len()`)
        // and `update_chunk` writes every element of its chunk.
        unsafe { w.set_len(old.len()) };
    })?;
    drop(weights);
    slot.var
        .set(&Tensor::from_vec(w, slot.var.shape(), slot.var.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn minimises_a_quadratic_and_clips() {
        let x = Var::from_vec(vec![3.0f32, -2.0], 2, &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("x".into(), x.clone())]).unwrap();
        for _ in 0..300 {
            let loss = x.sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let stats = opt.step(&grads, 0.05, 0.0, 1.0).unwrap();
            assert!(stats.grad_norm.is_finite());
        }
        let v: Vec<f32> = x.to_vec1().unwrap();
        assert!(v.iter().all(|a| a.abs() < 0.05), "{v:?}");
        assert_eq!(opt.t, 300);
    }

    /// The parallel update gives the same bits as the plain per-element
    /// formula (so trained models do not change).
    #[test]
    fn update_equals_the_plain_formula() {
        let n = 70_000;
        let start: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let x = Var::from_vec(start.clone(), (7, n / 7), &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("x".into(), x.clone())]).unwrap();
        let (lr, wd, clip) = (0.01, 0.1, 0.5);
        let (mut m, mut v, mut w) = (vec![0f32; n], vec![0f32; n], start);
        for t in 1..=3 {
            let loss = x.sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap(), lr, wd, clip).unwrap();
            let g: Vec<f32> = w.iter().map(|&w| 2.0 * w).collect();
            let norm = g.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt() as f32;
            let scale = if norm > clip { clip / norm } else { 1.0 };
            let (bc1, bc2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
            for i in 0..n {
                let g = g[i] * scale;
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * g;
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * g * g;
                let update = (m[i] / bc1) / ((v[i] / bc2).sqrt() + EPS);
                w[i] -= lr * update + lr * wd * w[i];
            }
        }
        let ours: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        assert!(ours.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(opt.moments.values().unwrap()[0].0, m);
    }

    /// The GPU's update (moments as tensors, tensor ops) gives the host
    /// loop's weights and moments to rounding, clipped and decayed.
    #[test]
    fn the_tensor_update_equals_the_host_update() {
        let start: Vec<f32> = (0..600)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let run = |on_tensors: bool| {
            let x = Var::from_vec(start.clone(), (20, 30), &Device::Cpu).unwrap();
            let b = Var::from_vec(start[..30].to_vec(), 30, &Device::Cpu).unwrap();
            let params = vec![("x".into(), x.clone()), ("b".into(), b.clone())];
            let mut opt = match on_tensors {
                true => AdamW::on_tensors(params),
                false => AdamW::new(params),
            }
            .unwrap();
            for _ in 0..4 {
                let loss = (x.sqr().unwrap().sum_all().unwrap() + b.sum_all().unwrap()).unwrap();
                opt.step(&loss.backward().unwrap(), 0.01, 0.1, 0.5).unwrap();
            }
            let mut all: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            all.extend(b.to_vec1::<f32>().unwrap());
            for i in 0..opt.slots.len() {
                let (m, v) = opt.moments.values().unwrap().swap_remove(i);
                all.extend(m);
                all.extend(v);
            }
            all
        };
        let (host, tensors) = (run(false), run(true));
        for (i, (a, b)) in host.iter().zip(&tensors).enumerate() {
            assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{i}: {a} vs {b}");
        }
    }

    /// Tensors made so far in this process (candle numbers every tensor,
    /// a view included, from one counter).
    fn tensors_made() -> usize {
        let probe = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
        let id = format!("{:?}", probe.id());
        id.trim_start_matches("TensorId(")
            .trim_end_matches(')')
            .parse()
            .unwrap()
    }

    /// The device update is flat: a few tensors per parameter (views and
    /// the copies into and out of the flat tensors) and a fixed number of
    /// ops for all of them, not a dozen ops per parameter (a GPU pays per
    /// launch). 50 parameters, as in the reference model.
    #[test]
    fn the_device_update_makes_few_tensors_per_parameter() {
        let vars: Vec<Var> = (0..50)
            .map(|i| Var::from_vec(vec![1.0f32 + i as f32; 6], (2, 3), &Device::Cpu).unwrap())
            .collect();
        let params = vars
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("p{i}"), v.clone()))
            .collect();
        let mut opt = AdamW::on_tensors(params).unwrap();
        let loss = Tensor::stack(
            &vars
                .iter()
                .map(|v| v.sqr().unwrap().sum_all().unwrap())
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap()
        .sum_all()
        .unwrap();
        let grads = loss.backward().unwrap();
        let before = tensors_made();
        opt.step(&grads, 0.01, 0.1, 1.0).unwrap();
        let made = tensors_made() - before - 1;
        // Per parameter: its gradient made contiguous and flattened, its
        // weight detached and flattened, its slice of the new weights and
        // that reshaped; then ~25 for all (one update per parameter made 20
        // each: 1,000 here).
        assert!(made <= 6 * vars.len() + 30, "{made} tensors for one step");
        assert!(
            vars[0].to_vec2::<f32>().unwrap()[0][0] < 1.0,
            "the weights moved"
        );
    }

    #[test]
    fn a_parameter_without_gradient_is_an_error() {
        let x = Var::from_vec(vec![1.0f32], 1, &Device::Cpu).unwrap();
        let y = Var::from_vec(vec![1.0f32], 1, &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("x".into(), x.clone()), ("y".into(), y)]).unwrap();
        let grads = x.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let err = opt.step(&grads, 0.1, 0.0, 0.0).err().unwrap();
        assert!(err.to_string().contains("`y` got no gradient"));
    }
}
