//! AdamW's moment estimates of one parameter, where they live: plain
//! vectors beside CPU weights (the optimizer's fused update loop), tensors
//! on the weights' device elsewhere, updated there by tensor ops, so a GPU
//! step never copies weights, gradients or moments through the host.
//! Checkpoints read and restore both as f32 vectors.

use candle_core::{Result, Tensor, Var};

use super::optimizer::{BETA1, BETA2, EPS};

pub enum Moments {
    Host { m: Vec<f32>, v: Vec<f32> },
    Device { m: Tensor, v: Tensor },
}

impl Moments {
    /// Zero moments for `var`: vectors for a CPU weight unless `on_tensors`.
    pub fn zeros(var: &Var, on_tensors: bool) -> Result<Moments> {
        if var.device().is_cpu() && !on_tensors {
            let n = var.elem_count();
            return Ok(Moments::Host {
                m: vec![0.0; n],
                v: vec![0.0; n],
            });
        }
        let zeros = var.as_tensor().zeros_like()?.detach();
        Ok(Moments::Device {
            m: zeros.clone(),
            v: zeros,
        })
    }

    /// Both moments as f32 vectors (for a checkpoint).
    pub fn values(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        match self {
            Moments::Host { m, v } => Ok((m.clone(), v.clone())),
            Moments::Device { m, v } => {
                Ok((m.flatten_all()?.to_vec1()?, v.flatten_all()?.to_vec1()?))
            }
        }
    }

    /// Replaces both moments with checkpointed values.
    pub fn restore(&mut self, m_new: Vec<f32>, v_new: Vec<f32>) -> Result<()> {
        match self {
            Moments::Host { m, v } => {
                if m_new.len() != m.len() || v_new.len() != v.len() {
                    candle_core::bail!("checkpointed moments of the wrong size");
                }
                (*m, *v) = (m_new, v_new);
            }
            Moments::Device { m, v } => {
                *m = Tensor::from_vec(m_new, m.shape(), m.device())?;
                *v = Tensor::from_vec(v_new, v.shape(), v.device())?;
            }
        }
        Ok(())
    }
}

/// The scalars of one AdamW update, the same for every parameter.
#[derive(Clone, Copy)]
pub struct UpdateScalars {
    pub lr: f32,
    /// `lr * weight_decay` for matrices, 0 for biases and gains.
    pub decay: f32,
    pub clip: f32,
    pub bc1: f32,
    pub bc2: f32,
}

/// The AdamW update of `var` from gradient `g` with moments `m`, `v` held
/// as tensors on its device: the host loop's formula as tensor ops.
pub fn update_tensors(
    var: &Var,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    s: UpdateScalars,
) -> Result<()> {
    let f = |x: f32| x as f64;
    let g = (g.detach() * f(s.clip))?;
    *m = ((&*m * f(BETA1))? + (&g * f(1.0 - BETA1))?)?.detach();
    *v = ((&*v * f(BETA2))? + (g.sqr()? * f(1.0 - BETA2))?)?.detach();
    let denominator = ((&*v / f(s.bc2))?.sqrt()? + f(EPS))?;
    let update = (&*m / f(s.bc1))?.div(&denominator)?;
    let w = var.as_tensor().detach();
    let step = ((update * f(s.lr))? + (&w * f(s.decay))?)?;
    var.set(&(w - step)?)
}
