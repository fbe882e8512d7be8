//! AdamW's moment estimates, where they live: a pair of plain vectors
//! beside each CPU weight (the optimizer's fused update loop), or, for
//! weights on another device, every parameter's moments in two flat
//! tensors there, updated for all parameters at once by tensor ops. A GPU
//! pays per kernel launch more than per element: the same update done
//! parameter by parameter was 18 tensor ops each (~900 a step for the
//! reference model's 50 parameters, plus 2 each for the norm); flat, it is
//! one copy per gradient and per weight into the flat tensors, one per
//! weight back, and about 25 ops for everything. A GPU step never copies
//! weights, gradients or moments through the host. Checkpoints read and
//! restore both as f32 vectors.

use std::ops::Range;

use candle_core::{DType, Result, Tensor, Var};

use super::optimizer::{BETA1, BETA2, EPS};

/// One CPU parameter's moments.
pub struct HostMoments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// Every parameter's moments, in slot order.
pub enum Moments {
    Host(Vec<HostMoments>),
    Flat(FlatMoments),
}

impl Moments {
    /// Zero moments for `vars` (with whether each decays): vectors for CPU
    /// weights unless `on_tensors`, flat tensors on the weights' device
    /// otherwise.
    pub fn zeros(vars: &[(&Var, bool)], on_tensors: bool) -> Result<Moments> {
        let on_cpu = vars.iter().all(|(var, _)| var.device().is_cpu());
        if on_cpu && !on_tensors {
            let host = vars
                .iter()
                .map(|(var, _)| HostMoments {
                    m: vec![0.0; var.elem_count()],
                    v: vec![0.0; var.elem_count()],
                })
                .collect();
            return Ok(Moments::Host(host));
        }
        FlatMoments::zeros(vars).map(Moments::Flat)
    }

    /// Every slot's moments as f32 vectors, in slot order (for a
    /// checkpoint): flat ones in one transfer each.
    pub fn values(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        match self {
            Moments::Host(host) => Ok(host.iter().map(|h| (h.m.clone(), h.v.clone())).collect()),
            Moments::Flat(flat) => {
                let (m, v) = (flat.m.to_vec1::<f32>()?, flat.v.to_vec1::<f32>()?);
                let part = |all: &[f32], span: &Range<usize>| all[span.clone()].to_vec();
                Ok(flat
                    .spans
                    .iter()
                    .map(|span| (part(&m, span), part(&v, span)))
                    .collect())
            }
        }
    }

    /// Replaces every slot's moments with checkpointed values, in slot order.
    pub fn restore(&mut self, values: Vec<(Vec<f32>, Vec<f32>)>) -> Result<()> {
        let sizes: Vec<usize> = match self {
            Moments::Host(host) => host.iter().map(|h| h.m.len()).collect(),
            Moments::Flat(flat) => flat.spans.iter().map(|s| s.len()).collect(),
        };
        if values.len() != sizes.len()
            || values
                .iter()
                .zip(&sizes)
                .any(|((m, v), &n)| m.len() != n || v.len() != n)
        {
            candle_core::bail!("checkpointed moments of the wrong size");
        }
        match self {
            Moments::Host(host) => {
                for (h, (m, v)) in host.iter_mut().zip(values) {
                    (h.m, h.v) = (m, v);
                }
            }
            Moments::Flat(flat) => {
                let (m, v): (Vec<Vec<f32>>, Vec<Vec<f32>>) = values.into_iter().unzip();
                let device = flat.m.device().clone();
                flat.m = Tensor::from_vec(m.concat(), flat.m.shape(), &device)?;
                flat.v = Tensor::from_vec(v.concat(), flat.v.shape(), &device)?;
            }
        }
        Ok(())
    }
}

/// All parameters' moments in two flat f32 tensors on their device, slot
/// `i` at `spans[i]`; `decays` is 1 where a value decays, 0 elsewhere.
pub struct FlatMoments {
    m: Tensor,
    v: Tensor,
    decays: Tensor,
    spans: Vec<Range<usize>>,
}

impl FlatMoments {
    fn zeros(vars: &[(&Var, bool)]) -> Result<FlatMoments> {
        let mut spans = Vec::with_capacity(vars.len());
        let mut decays = Vec::new();
        for (var, decay) in vars {
            let start = decays.len();
            decays.resize(start + var.elem_count(), if *decay { 1f32 } else { 0.0 });
            spans.push(start..decays.len());
        }
        let device = vars
            .first()
            .map_or(candle_core::Device::Cpu, |(var, _)| var.device().clone());
        let zeros = Tensor::zeros(decays.len(), DType::F32, &device)?;
        Ok(FlatMoments {
            m: zeros.clone(),
            v: zeros,
            decays: Tensor::from_vec(decays, spans.last().map_or(0, |s| s.end), &device)?,
            spans,
        })
    }

    /// The sum of squares of `grads` (contiguous, f32, in slot order)
    /// and the gradients as one flat tensor.
    pub fn flatten(grads: &[Tensor]) -> Result<(f64, Tensor)> {
        let flat: Vec<Tensor> = grads
            .iter()
            .map(|g| g.flatten_all())
            .collect::<Result<_>>()?;
        let g = Tensor::cat(&flat, 0)?;
        // In f64 on the device, one transfer: the norm only scales the clip.
        let sum = g
            .to_dtype(DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
        Ok((sum, g))
    }

    /// The AdamW update of every var (in slot order) from the flat gradient
    /// `g`: the host loop's formula as tensor ops, `s.decay` being
    /// `lr * weight_decay` for the values that decay.
    pub fn update(&mut self, vars: &[&Var], g: &Tensor, s: UpdateScalars) -> Result<()> {
        let f = |x: f32| x as f64;
        let weights: Vec<Tensor> = vars
            .iter()
            .map(|var| var.as_tensor().detach().flatten_all())
            .collect::<Result<_>>()?;
        let w = Tensor::cat(&weights, 0)?;
        let g = (g.detach() * f(s.clip))?;
        self.m = ((&self.m * f(BETA1))? + (&g * f(1.0 - BETA1))?)?.detach();
        self.v = ((&self.v * f(BETA2))? + (g.sqr()? * f(1.0 - BETA2))?)?.detach();
        let denominator = ((&self.v / f(s.bc2))?.sqrt()? + f(EPS))?;
        let update = (&self.m / f(s.bc1))?.div(&denominator)?;
        let decay = (&w * (&self.decays * f(s.decay))?)?;
        let w = (w - ((update * f(s.lr))? + decay)?)?;
        for (var, span) in vars.iter().zip(&self.spans) {
            var.set(&w.narrow(0, span.start, span.len())?.reshape(var.shape())?)?;
        }
        Ok(())
    }
}

/// The scalars of one AdamW update, the same for every parameter.
#[derive(Clone, Copy)]
pub struct UpdateScalars {
    pub lr: f32,
    /// `lr * weight_decay` (for matrices; biases and gains do not decay).
    pub decay: f32,
    pub clip: f32,
    pub bc1: f32,
    pub bc2: f32,
}
