#!/usr/bin/env python3
"""PyTorch (eager, f32 or bf16, CPU or CUDA) twin of vgmake's `bench_train`
example: the same model and training step, timed the same way, for a
side-by-side comparison.

    python3 benches/train_torch.py [threads] [steps] [warmup] [context] [batch]
        [--device cpu|cuda] [--dtype f32|bf16] [--d-model N] [--layers N] [--heads N]

Defaults: 2 threads, 10 timed steps, 2 warm-up steps, context 256, batch 16,
the CPU in f32, d_model 256, 4 layers, 4 heads. On CUDA each step ends with
a synchronisation (as vgmake's reads its loss), and `--dtype bf16` runs the
forward and backward under `torch.autocast(bfloat16)` (f32 master weights,
as vgmake's bf16).
Needs PyTorch (`pip install torch`). Prints one line in bench_train's format:

    threads 2: 8 timed steps, median 0.631 s/step = 6493 tokens/s (...), peak RSS 1030 MiB

The model is vgmake's (stages/src/train/model.rs), written out:
- token embedding + learned positions (vocab 512, d_model 256, context 256);
- 4 pre-LayerNorm blocks (eps 1e-5): causal self-attention, 4 heads, one
  fused (d, 3d) QKV projection with bias whose columns are (3, heads, head_dim),
  an output projection with bias; then an MLP d -> 4d -> d with biases and
  GELU (tanh approximation); residual connections around both;
- a final LayerNorm and an output head without bias (not tied);
- no dropout (bench_train sets dropout 0).
Initialisation as GPT-2 (ModelConfig::initial_values): N(0, 0.02) for
embeddings and weights, N(0, 0.02 / sqrt(2 layers)) for the two residual
projections (`attn.proj.w`, `mlp.proj.w`), zero biases, unit gains.
Optimizer as optimizer.rs: AdamW, betas (0.9, 0.95), eps 1e-8, weight decay
0.1 on matrices only (rank >= 2: weights and embeddings), global-norm
gradient clipping at 1.0; the learning rate follows schedule.rs (warm-up 10
steps to 1e-3, then cosine). Loss: mean cross-entropy of the next token.
Data: uniform random ids in 2..512 (200,000 of them), random windows drawn
each step, as bench_train does. Attention uses
`torch.nn.functional.scaled_dot_product_attention(is_causal=True)`, PyTorch's
fastest eager path on CPU.
"""

import argparse
import math
import resource
import sys
import time
import warnings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("numbers", type=int, nargs="*")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    opts = parser.parse_args()
    args = opts.numbers
    threads = args[0] if len(args) > 0 else 2
    steps = args[1] if len(args) > 1 else 10
    warmup_steps = args[2] if len(args) > 2 else 2
    context = args[3] if len(args) > 3 else 256
    batch = args[4] if len(args) > 4 else 16
    warnings.filterwarnings("ignore")  # e.g. "Failed to initialize NumPy"
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("PyTorch is not installed: pip install torch", file=sys.stderr)
        sys.exit(3)

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    device = torch.device(opts.device)
    if opts.device == "cuda" and not torch.cuda.is_available():
        print("PyTorch sees no CUDA device", file=sys.stderr)
        sys.exit(3)
    vocab, d, layers, heads = 512, opts.d_model, opts.layers, opts.heads
    hd = d // heads
    hidden = 4 * d
    lr_peak, warmup, weight_decay, grad_clip = 1e-3, 10, 0.1, 1.0
    total_steps = warmup_steps + steps

    def normal(*shape, std=0.02):
        return torch.nn.Parameter((torch.randn(*shape) * std).to(device))

    def zeros(*shape):
        return torch.nn.Parameter(torch.zeros(*shape, device=device))

    def ones(*shape):
        return torch.nn.Parameter(torch.ones(*shape, device=device))

    residual_std = 0.02 / math.sqrt(2 * layers)
    # Weights stored (in, out) as in vgmake: y = x @ w + b.
    p = {"tok_emb": normal(vocab, d), "pos_emb": normal(context, d)}
    for l in range(layers):
        p[f"h{l}.ln1.g"], p[f"h{l}.ln1.b"] = ones(d), zeros(d)
        p[f"h{l}.attn.qkv.w"], p[f"h{l}.attn.qkv.b"] = normal(d, 3 * d), zeros(3 * d)
        p[f"h{l}.attn.proj.w"] = normal(d, d, std=residual_std)
        p[f"h{l}.attn.proj.b"] = zeros(d)
        p[f"h{l}.ln2.g"], p[f"h{l}.ln2.b"] = ones(d), zeros(d)
        p[f"h{l}.mlp.fc.w"], p[f"h{l}.mlp.fc.b"] = normal(d, hidden), zeros(hidden)
        p[f"h{l}.mlp.proj.w"] = normal(hidden, d, std=residual_std)
        p[f"h{l}.mlp.proj.b"] = zeros(d)
    p["ln_f.g"], p["ln_f.b"] = ones(d), zeros(d)
    p["head.w"] = normal(d, vocab)

    def forward(ids):
        b, t = ids.shape
        x = p["tok_emb"][ids] + p["pos_emb"][:t]
        for l in range(layers):
            h = F.layer_norm(x, (d,), p[f"h{l}.ln1.g"], p[f"h{l}.ln1.b"], 1e-5)
            qkv = torch.addmm(p[f"h{l}.attn.qkv.b"], h.view(b * t, d), p[f"h{l}.attn.qkv.w"])
            q, k, v = qkv.view(b, t, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            y = y.transpose(1, 2).reshape(b * t, d)
            x = x + torch.addmm(p[f"h{l}.attn.proj.b"], y, p[f"h{l}.attn.proj.w"]).view(b, t, d)
            h = F.layer_norm(x, (d,), p[f"h{l}.ln2.g"], p[f"h{l}.ln2.b"], 1e-5)
            m = torch.addmm(p[f"h{l}.mlp.fc.b"], h.view(b * t, d), p[f"h{l}.mlp.fc.w"])
            m = F.gelu(m, approximate="tanh")
            x = x + torch.addmm(p[f"h{l}.mlp.proj.b"], m, p[f"h{l}.mlp.proj.w"]).view(b, t, d)
        x = F.layer_norm(x, (d,), p["ln_f.g"], p["ln_f.b"], 1e-5)
        return x.view(b * t, d) @ p["head.w"]

    decay = [v for v in p.values() if v.dim() >= 2]
    no_decay = [v for v in p.values() if v.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr_peak,
        betas=(0.9, 0.95),
        eps=1e-8,
    )

    def learning_rate(step):
        if step < warmup:
            return lr_peak * (step + 1) / warmup
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        return lr_peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(5)
    data = torch.randint(2, vocab, (200_000,), generator=gen)
    offsets = torch.arange(context + 1)
    cuda = opts.device == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and opts.dtype == "bf16")
    if opts.dtype == "bf16" and not cuda:
        print("--dtype bf16 is for --device cuda (as in vgmake)", file=sys.stderr)
        sys.exit(2)

    marks = []
    for step in range(total_steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step)
        starts = torch.randint(0, len(data) - context, (batch,), generator=gen)
        windows = data[starts[:, None] + offsets].to(device)
        inputs, targets = windows[:, :-1], windows[:, 1:].reshape(-1)
        with autocast:
            logits = forward(inputs)
        loss = F.cross_entropy(logits.float(), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(p.values(), grad_clip)
        opt.step()
        loss.item()
        if cuda:
            torch.cuda.synchronize()
        marks.append((time.perf_counter(), time.process_time()))

    timed = marks[warmup_steps - 1 :]
    per_step = [b[0] - a[0] for a, b in zip(timed, timed[1:])]
    cpu_per_step = (timed[-1][1] - timed[0][1]) / len(per_step)
    median = sorted(per_step)[len(per_step) // 2]
    mean = sum(per_step) / len(per_step)
    tokens = batch * context
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{opts.device} {opts.dtype} d_model {d} layers {layers} heads {heads} context {context} batch {batch}")
    gpu = f", GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if cuda else ""
    print(
        f"threads {threads}: {len(per_step)} timed steps, median {median:.3f} s/step = "
        f"{tokens / median:.0f} tokens/s (mean {tokens / mean:.0f} tokens/s), "
        f"peak RSS {peak:.0f} MiB, CPU {cpu_per_step:.3f} s/step{gpu} (torch {torch.__version__})"
    )


if __name__ == "__main__":
    main()
