//! The `train` stage kind: a GPT-style decoder-only Transformer in candle,
//! trained on the `vocab` stage's dataset, with fused CPU kernels, AdamW,
//! resumable checkpoints and unigram/bigram baselines.

pub mod baselines;
pub mod batches;
pub mod checkpoint;
pub mod composite;
pub mod curve;
pub mod curve_plot;
pub mod device;
pub mod evaluate;
pub mod fastmath;
pub mod kernels;
pub mod kind;
pub mod kv_cache;
pub mod memory;
pub mod model;
pub mod moments;
pub mod ops;
pub mod optimizer;
pub mod rng;
pub mod schedule;
pub mod score;
pub mod settings;
pub mod softmax_op;
#[cfg(test)]
mod step_equivalence;
pub mod trainer;

pub use kernels::Kernels;
pub use kind::TrainKind;
pub use kv_cache::KvCache;
pub use model::{Gpt, ModelConfig};
