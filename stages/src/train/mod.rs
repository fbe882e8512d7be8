//! The `train` stage kind: a GPT-style decoder-only Transformer in candle,
//! trained on the `vocab` stage's dataset, with fused CPU kernels, AdamW,
//! resumable checkpoints and unigram/bigram baselines.

pub mod baselines;
pub mod batches;
pub mod checkpoint;
pub mod curve;
pub mod curve_plot;
pub mod evaluate;
pub mod fastmath;
pub mod kind;
pub mod kv_cache;
pub mod memory;
pub mod model;
pub mod ops;
pub mod optimizer;
pub mod rng;
pub mod schedule;
pub mod score;
pub mod settings;
pub mod trainer;

pub use kind::TrainKind;
pub use kv_cache::KvCache;
pub use model::{Gpt, ModelConfig};
