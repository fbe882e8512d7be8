//! The model: a GPT-style decoder-only Transformer. Token embedding plus
//! learned positions, `layers` pre-LayerNorm blocks (causal multi-head
//! self-attention, then a GELU MLP of width 4 d_model), a final LayerNorm
//! and an output head. Weights are stored `(in, out)`: `y = x @ w + b`.
//!
//! [`Gpt::load`] rebuilds a trained model from a `train` output folder;
//! [`Gpt::forward`] runs full sequences and [`Gpt::forward_step`] one token
//! at a time with a [`KvCache`](super::kv_cache::KvCache). The layers run
//! through [`Kernels`]: our fused CPU ops, or candle's composite ops (CUDA).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Storage, Tensor};
use serde::{Deserialize, Serialize};

use super::kernels::Kernels;
use super::ops::{BlockWeights, StepDims, Weights, train_step};
use super::rng::Rng;

/// Everything needed to rebuild the model (written as `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub layers: usize,
    pub heads: usize,
    /// The longest sequence the learned positions cover.
    pub context: usize,
    pub mlp_hidden: usize,
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.d_model / self.heads
    }

    /// Every parameter's name and shape, in a fixed order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, h) = (self.d_model, self.mlp_hidden);
        let mut shapes = vec![
            ("tok_emb".to_string(), vec![self.vocab_size, d]),
            ("pos_emb".to_string(), vec![self.context, d]),
        ];
        for l in 0..self.layers {
            for (name, shape) in [
                ("ln1.g", vec![d]),
                ("ln1.b", vec![d]),
                ("attn.qkv.w", vec![d, 3 * d]),
                ("attn.qkv.b", vec![3 * d]),
                ("attn.proj.w", vec![d, d]),
                ("attn.proj.b", vec![d]),
                ("ln2.g", vec![d]),
                ("ln2.b", vec![d]),
                ("mlp.fc.w", vec![d, h]),
                ("mlp.fc.b", vec![h]),
                ("mlp.proj.w", vec![h, d]),
                ("mlp.proj.b", vec![d]),
            ] {
                shapes.push((format!("h{l}.{name}"), shape));
            }
        }
        shapes.push(("ln_f.g".to_string(), vec![d]));
        shapes.push(("ln_f.b".to_string(), vec![d]));
        shapes.push(("head.w".to_string(), vec![d, self.vocab_size]));
        shapes
    }

    pub fn parameter_count(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// GPT-2's initialisation: N(0, 0.02) weights, residual projections
    /// scaled by 1/sqrt(2 layers), zero biases, unit LayerNorm gains.
    pub fn initial_values(&self, rng: &mut Rng) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let residual_std = 0.02 / (2.0 * self.layers as f32).sqrt();
        self.parameter_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let values = if name.ends_with(".g") {
                    vec![1.0; n]
                } else if name.ends_with(".b") {
                    vec![0.0; n]
                } else {
                    let std = if name.ends_with("proj.w") {
                        residual_std
                    } else {
                        0.02
                    };
                    (0..n).map(|_| rng.normal() * std).collect()
                };
                (name, shape, values)
            })
            .collect()
    }
}

/// Inverted dropout with masks drawn from the training RNG (so a resumed run
/// draws the same masks).
pub struct Dropout<'a> {
    pub rng: &'a mut Rng,
    pub p: f32,
}

impl Dropout<'_> {
    /// `n` mask values, `1 / keep` or 0, drawn from the training RNG.
    pub fn mask(&mut self, n: usize) -> Vec<f32> {
        let keep = 1.0 - self.p;
        (0..n)
            .map(|_| {
                if self.rng.uniform() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        let mask = self.mask(x.elem_count());
        x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
    }
}

fn maybe_drop(x: Tensor, dropout: &mut Option<Dropout>) -> Result<Tensor> {
    match dropout {
        Some(d) if d.p > 0.0 => d.apply(&x),
        _ => Ok(x),
    }
}

#[derive(Clone)]
pub(crate) struct Block {
    pub ln1: (Tensor, Tensor),
    pub qkv: (Tensor, Tensor),
    pub proj: (Tensor, Tensor),
    pub ln2: (Tensor, Tensor),
    pub fc: (Tensor, Tensor),
    pub mlp_proj: (Tensor, Tensor),
}

/// Cheap to clone: the tensors share their storage.
#[derive(Clone)]
pub struct Gpt {
    pub config: ModelConfig,
    pub(crate) tok_emb: Tensor,
    pub(crate) pos_emb: Tensor,
    pub(crate) blocks: Vec<Block>,
    pub(crate) ln_f: (Tensor, Tensor),
    pub(crate) head: Tensor,
    pub(crate) kernels: Kernels,
}

impl Gpt {
    /// Builds the model around named tensors (training passes its `Var`s'
    /// tensors, which share storage, so optimizer updates show through).
    pub fn from_tensors(config: ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<Gpt> {
        for (name, shape) in config.parameter_shapes() {
            match tensors.get(&name) {
                Some(t) if t.dims() == shape.as_slice() => {}
                Some(t) => candle_core::bail!(
                    "weight `{name}` has shape {:?}, the config says {shape:?}",
                    t.dims()
                ),
                None => candle_core::bail!("weight `{name}` is missing"),
            }
        }
        let get = |name: &str| tensors[name].clone();
        let pair = |prefix: String, a: &str, b: &str| {
            (get(&format!("{prefix}.{a}")), get(&format!("{prefix}.{b}")))
        };
        let blocks = (0..config.layers)
            .map(|l| Block {
                ln1: pair(format!("h{l}.ln1"), "g", "b"),
                qkv: pair(format!("h{l}.attn.qkv"), "w", "b"),
                proj: pair(format!("h{l}.attn.proj"), "w", "b"),
                ln2: pair(format!("h{l}.ln2"), "g", "b"),
                fc: pair(format!("h{l}.mlp.fc"), "w", "b"),
                mlp_proj: pair(format!("h{l}.mlp.proj"), "w", "b"),
            })
            .collect();
        let head = get("head.w");
        Ok(Gpt {
            kernels: Kernels::for_device(head.device()),
            tok_emb: get("tok_emb"),
            pos_emb: get("pos_emb"),
            blocks,
            ln_f: pair("ln_f".into(), "g", "b"),
            head,
            config,
        })
    }

    /// The same model run through other kernels (the composite path on the
    /// CPU in tests, or in bf16 for GPU training).
    pub fn with_kernels(mut self, kernels: Kernels) -> Gpt {
        self.kernels = kernels;
        self
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Loads a trained model from a `train` stage's output folder
    /// (`config.json` and `model.safetensors`).
    pub fn load(dir: &Path, device: &Device) -> std::result::Result<Gpt, String> {
        let config_path = dir.join("config.json");
        let text =
            std::fs::read(&config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let config: ModelConfig =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let weights_path = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, device)
            .map_err(|e| format!("{}: {e}", weights_path.display()))?;
        Gpt::from_tensors(config, &tensors).map_err(|e| format!("{}: {e}", weights_path.display()))
    }

    /// Logits `(b * t, vocab)` for ids `(b, t)` (u32), t <= context.
    pub fn forward_flat(&self, ids: &Tensor, mut dropout: Option<Dropout>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if t > self.config.context {
            candle_core::bail!(
                "sequence of {t} tokens is longer than the context of {}",
                self.config.context
            );
        }
        let d = self.config.d_model;
        let tokens = self
            .tok_emb
            .embedding(&ids.flatten_all()?)?
            .reshape((b, t, d))?;
        let x = tokens.broadcast_add(&self.pos_emb.narrow(0, 0, t)?)?;
        let mut x = maybe_drop(x.reshape((b * t, d))?, &mut dropout)?;
        let k = self.kernels;
        let mask = k.mask(t, ids.device())?;
        for block in &self.blocks {
            x = self.block_forward(block, &x, b, mask.as_ref(), &mut dropout)?;
        }
        k.head(&k.layer_norm(&x, &self.ln_f)?, &self.head)
    }

    /// Logits `(b, t, vocab)` for ids `(b, t)`: the plain full-sequence forward.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        self.forward_flat(ids, None)?
            .reshape((b, t, self.config.vocab_size))
    }

    fn block_forward(
        &self,
        blk: &Block,
        x: &Tensor,
        b: usize,
        mask: Option<&Tensor>,
        dropout: &mut Option<Dropout>,
    ) -> Result<Tensor> {
        let k = self.kernels;
        let h = k.layer_norm(x, &blk.ln1)?;
        // (b t, 3 d) straight into the attention, (b t, d) out of it.
        let y = k.attention(&k.linear(&h, &blk.qkv)?, b, self.config.heads, mask)?;
        let a = k.residual(k.linear(&y, &blk.proj)?)?;
        let x = (x + maybe_drop(a, dropout)?)?;
        let h = k.layer_norm(&x, &blk.ln2)?;
        let m = k.residual(k.linear(&k.linear_gelu(&h, &blk.fc)?, &blk.mlp_proj)?)?;
        x + maybe_drop(m, dropout)?
    }

    /// The parameters in `ModelConfig::parameter_shapes` order.
    fn parameter_tensors(&self) -> Vec<&Tensor> {
        let mut all = vec![&self.tok_emb, &self.pos_emb];
        for b in &self.blocks {
            for (w, bias) in [&b.ln1, &b.qkv, &b.proj, &b.ln2, &b.fc, &b.mlp_proj] {
                all.push(w);
                all.push(bias);
            }
        }
        all.extend([&self.ln_f.0, &self.ln_f.1, &self.head]);
        all
    }

    /// One training step on the CPU: the loss of `targets` (`(b t,)`, u32)
    /// after `ids` (`(b, t)`, u32) and the gradient of every parameter, in
    /// `ModelConfig::parameter_shapes` order. The same model, kernels and
    /// dropout masks as `forward_flat` + `cross_entropy` + `backward`, in
    /// one pass each way without candle's graph (see `ops::train_step`).
    pub fn train_step(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        mut dropout: Option<Dropout>,
    ) -> Result<(f32, Vec<Vec<f32>>)> {
        let (b, t) = ids.dims2()?;
        let c = &self.config;
        if t > c.context {
            candle_core::bail!(
                "sequence of {t} tokens is longer than the context of {}",
                c.context
            );
        }
        let ids: Vec<u32> = ids.flatten_all()?.to_vec1()?;
        let targets: Vec<u32> = targets.flatten_all()?.to_vec1()?;
        if targets.len() != ids.len() {
            candle_core::bail!("{} targets for {} inputs", targets.len(), ids.len());
        }
        if let Some(bad) = ids
            .iter()
            .chain(&targets)
            .find(|&&i| i as usize >= c.vocab_size)
        {
            candle_core::bail!("token id {bad} outside the vocabulary of {}", c.vocab_size);
        }
        let tensors = self.parameter_tensors();
        let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
        let mut slices = Vec::with_capacity(guards.len());
        for (storage, layout) in &guards {
            let Storage::Cpu(cpu) = &**storage else {
                candle_core::bail!("train_step runs on the CPU");
            };
            let Some((start, end)) = layout.contiguous_offsets() else {
                candle_core::bail!("train_step needs contiguous weights");
            };
            slices.push(&cpu.as_slice::<f32>()?[start..end]);
        }
        let pair = |i: usize| (slices[i], slices[i + 1]);
        let weights = Weights {
            tok_emb: slices[0],
            pos_emb: slices[1],
            blocks: (0..c.layers)
                .map(|l| {
                    let o = 2 + 12 * l;
                    BlockWeights {
                        ln1: pair(o),
                        qkv: pair(o + 2),
                        proj: pair(o + 4),
                        ln2: pair(o + 6),
                        fc: pair(o + 8),
                        mlp_proj: pair(o + 10),
                    }
                })
                .collect(),
            ln_f: pair(2 + 12 * c.layers),
            head: slices[4 + 12 * c.layers],
        };
        let dims = StepDims {
            vocab: c.vocab_size,
            d: c.d_model,
            heads: c.heads,
            hidden: c.mlp_hidden,
            batch: b,
            t,
        };
        let mut mask = |n: usize| match &mut dropout {
            Some(d) if d.p > 0.0 => Some(d.mask(n)),
            _ => None,
        };
        Ok(train_step(&weights, dims, &ids, &targets, &mut mask))
    }

    pub fn device(&self) -> &Device {
        self.head.device()
    }

    pub fn dtype(&self) -> DType {
        self.head.dtype()
    }
}
