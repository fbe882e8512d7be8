//! The train stage's parameters, read once into a plain struct, and the
//! parameters its resumable state ignores.

use crate::api::{ParamSpec, ParamType, Params};

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub d_model: usize,
    pub layers: usize,
    pub heads: usize,
    pub context: usize,
    pub dropout: f32,
    pub batch: usize,
    pub steps: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub seed: u64,
    pub eval_every: usize,
    pub eval_tokens: usize,
    pub checkpoint_every: usize,
    /// 0 = the engine's `-j`.
    pub threads: usize,
    pub device: String,
    /// `f32`, or `bf16` (GPU only): the precision of the forward and
    /// backward passes; master weights, AdamW and the loss stay f32.
    pub dtype: String,
    /// Not a parameter (always false in a stage): tests and benchmarks set
    /// it to run the GPU's training path (composite kernels with autograd,
    /// AdamW on tensors) on the CPU, where its math can be checked.
    pub gpu_path_on_cpu: bool,
}

/// Parameters that do not change the trained weights of steps already done,
/// so they stay out of the name of the checkpoint folder: raising `steps`
/// resumes.
pub const NOT_IN_STATE: &[&str] = &["steps", "checkpoint_every", "threads"];

pub fn specs() -> Vec<ParamSpec> {
    let int = |min, max| ParamType::Int { min, max };
    let float = |min, max| ParamType::Float { min, max };
    vec![
        ParamSpec::new(
            "d_model",
            int(8, 4096),
            128,
            "width of the model (embedding size)",
        ),
        ParamSpec::new("layers", int(1, 64), 4, "number of Transformer blocks"),
        ParamSpec::new(
            "heads",
            int(1, 64),
            4,
            "attention heads per block (must divide d_model)",
        ),
        ParamSpec::new(
            "context",
            int(2, 8192),
            256,
            "tokens per training window (learned positions)",
        ),
        ParamSpec::new(
            "dropout",
            float(0.0, 0.9),
            0.0,
            "dropout on embeddings and residual branches",
        ),
        ParamSpec::new("batch", int(1, 4096), 16, "windows per training step"),
        ParamSpec::new(
            "steps",
            int(1, 10_000_000),
            800,
            "optimizer steps (raising it resumes a finished run)",
        ),
        ParamSpec::new("lr", float(1e-7, 1.0), 2e-3, "peak learning rate (AdamW)"),
        ParamSpec::new(
            "warmup",
            int(0, 1_000_000),
            50,
            "linear warm-up steps before the cosine decay",
        ),
        ParamSpec::new(
            "weight_decay",
            float(0.0, 10.0),
            0.1,
            "AdamW decoupled weight decay on matrices",
        ),
        ParamSpec::new(
            "grad_clip",
            float(0.0, 1e6),
            1.0,
            "global gradient-norm clip (0 = off)",
        ),
        ParamSpec::new(
            "seed",
            int(0, i64::MAX),
            1,
            "seed of initialisation, batches and dropout",
        ),
        ParamSpec::new(
            "eval_every",
            int(1, 10_000_000),
            100,
            "steps between validation evaluations",
        ),
        ParamSpec::new(
            "eval_tokens",
            int(0, i64::MAX),
            16_384,
            "validation tokens per periodic evaluation (0 = all; the final one uses all)",
        ),
        ParamSpec::new(
            "checkpoint_every",
            int(1, 10_000_000),
            100,
            "steps between checkpoints (an interruption loses at most this many)",
        ),
        ParamSpec::new(
            "threads",
            int(0, 1024),
            0,
            "CPU threads for training (0 = the engine's -j)",
        ),
        super::device::spec(),
        ParamSpec::new(
            "dtype",
            ParamType::Str {
                choices: &["f32", "bf16"],
            },
            "f32",
            "f32, or bf16 on a GPU (bf16 forward/backward, f32 master weights, AdamW and loss)",
        ),
    ]
}

impl Settings {
    pub fn from_params(p: &Params) -> Settings {
        Settings {
            d_model: p.usize("d_model"),
            layers: p.usize("layers"),
            heads: p.usize("heads"),
            context: p.usize("context"),
            dropout: p.float("dropout") as f32,
            batch: p.usize("batch"),
            steps: p.usize("steps"),
            lr: p.float("lr"),
            warmup: p.usize("warmup"),
            weight_decay: p.float("weight_decay"),
            grad_clip: p.float("grad_clip"),
            seed: p.int("seed") as u64,
            eval_every: p.usize("eval_every"),
            eval_tokens: p.usize("eval_tokens"),
            checkpoint_every: p.usize("checkpoint_every"),
            threads: p.usize("threads"),
            device: p.str("device").to_string(),
            dtype: p.str("dtype").to_string(),
            gpu_path_on_cpu: false,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.d_model % self.heads != 0 {
            return Err(format!(
                "`heads` ({}) must divide `d_model` ({})",
                self.heads, self.d_model
            ));
        }
        super::device::check(&self.device)?;
        if self.dtype == "bf16" && self.device == "cpu" && !self.gpu_path_on_cpu {
            // The CPU trains through the fused f32 kernels; bf16 there would
            // be a slower emulation, not a faster run.
            return Err(
                "`dtype = \"bf16\"` is for GPU training (`device = \"cuda\"`): the CPU trains \
                 in f32 with its fused kernels; use `dtype = \"f32\"`"
                    .into(),
            );
        }
        self.check_memory()
    }

    /// Whether training takes the GPU's path (composite kernels, autograd).
    pub fn gpu_path(&self) -> bool {
        self.device != "cpu" || self.gpu_path_on_cpu
    }

    /// The dtype of the forward and backward passes.
    pub fn compute_dtype(&self) -> candle_core::DType {
        match self.dtype.as_str() {
            "bf16" => candle_core::DType::BF16,
            _ => candle_core::DType::F32,
        }
    }

    /// Refuses, before anything is allocated, a CPU run whose training step
    /// needs more memory than the machine has (`batch = 4096` with
    /// `context = 8192` aborted allocating). The estimate is a lower bound
    /// in f32: per layer about 16 values per token and width kept for the
    /// backward pass plus the attention weights (heads x context per token,
    /// twice), the embeddings, and the weights with their gradients and
    /// AdamW moments; the logits (vocabulary unknown here) come on top. The
    /// reference configuration estimates 470 MB and peaks at 967 MiB.
    fn check_memory(&self) -> Result<(), String> {
        let [b, t, d, l, h] = [
            self.batch,
            self.context,
            self.d_model,
            self.layers,
            self.heads,
        ]
        .map(|v| v as u128);
        let tokens = b * t;
        let per_layer = tokens * 16 * d + 2 * b * h * t * t;
        let weights = l * 12 * d * d + t * d;
        let need = 4 * (l * per_layer + tokens * 4 * d + 4 * weights);
        // SAFETY: sysconf only reads system configuration.
        let (pages, page_size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let have = pages.max(0) as u128 * page_size.max(0) as u128;
        if self.device != "cpu" || have == 0 || need <= have {
            return Ok(());
        }
        let gib = |bytes: u128| bytes as f64 / (1u64 << 30) as f64;
        Err(format!(
            "one training step with `batch` = {b}, `context` = {t}, `d_model` = {d}, \
             `layers` = {l} and `heads` = {h} needs at least {:.1} GiB of memory, and this \
             machine has {:.1} GiB: lower `batch` or `context` (attention grows with \
             batch x context^2)",
            gib(need),
            gib(have)
        ))
    }
}
