//! Incremental decoding: one token at a time, reusing the keys and values of
//! the tokens before it. For the `sample` stage.

use candle_core::{Result, Tensor};

use super::model::Gpt;

/// Keys and values per layer, `(heads, len, head_dim)`, and the tokens they
/// came from (to re-prime when the context is full).
#[derive(Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    tokens: Vec<u32>,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }
    /// Tokens in the cache (= the position of the next token).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

impl Gpt {
    /// Feeds `token` after those in `cache` and returns the next-token
    /// logits. When the context is full, the cache restarts from the last
    /// half of its tokens (learned positions cannot slide).
    pub fn forward_step(&self, token: u32, cache: &mut KvCache) -> Result<Vec<f32>> {
        if cache.len() >= self.config.context {
            let keep = cache.tokens[cache.len() - self.config.context / 2..].to_vec();
            *cache = KvCache::new();
            for &t in &keep {
                self.step(t, cache)?;
            }
        }
        self.step(token, cache)?.to_vec1()
    }

    fn step(&self, token: u32, cache: &mut KvCache) -> Result<Tensor> {
        let (d, heads, hd) = (
            self.config.d_model,
            self.config.heads,
            self.config.head_dim(),
        );
        if token as usize >= self.config.vocab_size {
            candle_core::bail!("token id {token} outside the vocabulary");
        }
        let pos = cache.len();
        let mut x =
            (self.tok_emb.narrow(0, token as usize, 1)? + self.pos_emb.narrow(0, pos, 1)?)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let ker = self.kernels;
        for (l, blk) in self.blocks.iter().enumerate() {
            let h = ker.layer_norm(&x, &blk.ln1)?;
            let qkv = ker.linear(&h, &blk.qkv)?.reshape((3, heads, 1, hd))?;
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let (k, v) = match cache.layers.get(l) {
                Some((ck, cv)) => (Tensor::cat(&[ck, &k], 1)?, Tensor::cat(&[cv, &v], 1)?),
                None => (k, v),
            };
            // Inference only: candle-nn's fused softmax (no backward) is fine.
            let att = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? * scale)?)?;
            let y = att.matmul(&v)?.reshape((1, d))?;
            if l < cache.layers.len() {
                cache.layers[l] = (k, v);
            } else {
                cache.layers.push((k, v));
            }
            x = (x + ker.residual(ker.linear(&y, &blk.proj)?)?)?;
            let h = ker.layer_norm(&x, &blk.ln2)?;
            let m = ker.linear(&ker.linear_gelu(&h, &blk.fc)?, &blk.mlp_proj)?;
            x = (&x + ker.residual(m)?)?;
        }
        cache.tokens.push(token);
        ker.head(&ker.layer_norm(&x, &self.ln_f)?, &self.head)?
            .squeeze(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Kernels;
    use crate::train::model::ModelConfig;
    use crate::train::rng::Rng;
    use candle_core::Device;
    use std::collections::HashMap;

    fn small_model() -> Gpt {
        let config = ModelConfig {
            vocab_size: 13,
            d_model: 16,
            layers: 2,
            heads: 4,
            context: 8,
            mlp_hidden: 64,
        };
        let mut rng = Rng::new(3);
        let tensors: HashMap<String, Tensor> = config
            .initial_values(&mut rng)
            .into_iter()
            .map(|(name, shape, mut values)| {
                // Larger weights than the init so that differences would show.
                values.iter_mut().for_each(|v| *v += rng.normal() * 0.3);
                (name, Tensor::from_vec(values, shape, &Device::Cpu).unwrap())
            })
            .collect();
        Gpt::from_tensors(config, &tensors).unwrap()
    }

    /// On both kernels: the composite ones are what a GPU samples with.
    #[test]
    fn incremental_logits_equal_the_full_forward() {
        incremental_equals_full(small_model());
        let composite = Kernels::Composite {
            dtype: candle_core::DType::F32,
        };
        incremental_equals_full(small_model().with_kernels(composite));
    }

    fn incremental_equals_full(model: Gpt) {
        let ids = [2u32, 5, 7, 1, 12, 0, 3, 9];
        let full = model
            .forward(
                &Tensor::new(&ids[..], &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
            )
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let mut cache = KvCache::new();
        for (i, &id) in ids.iter().enumerate() {
            let step = model.forward_step(id, &mut cache).unwrap();
            for (a, b) in step.iter().zip(&full[i]) {
                assert!((a - b).abs() < 1e-4, "position {i}: {a} vs {b}");
            }
        }
        assert_eq!(cache.len(), ids.len());
        // A full cache re-primes from its last half instead of failing.
        let next = model.forward_step(4, &mut cache).unwrap();
        assert_eq!(next.len(), 13);
        assert_eq!(cache.len(), 5);
    }
}
