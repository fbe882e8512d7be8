#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and its driver:
#
# 1. nvcc: the pinned CUDA 13.0 wheels from pip where it is missing
#    (scripts/cuda-toolkit.sh);
# 2. builds vgmake and the bench_train example with `--features cuda`
#    (own target folder, target/cuda), unless VGMAKE_BIN and BENCH_TRAIN
#    name prebuilt ones (scripts/cuda-build.sh builds them on a machine
#    without a GPU); the CUDA libraries they link are looked up in the
#    toolkit and in Python's NVIDIA wheels where the loader misses them;
# 3. runs the default pipeline end to end with train.device="cuda" and
#    sample.device="cuda" (a temporary project: pipeline.toml and the demo
#    corpus), then trains the same key on the CPU beside it and prints
#    `vgmake compare` (equal quality against the baselines is expected, equal
#    bits are not);
# 4. the training benchmark, vgmake (and its step profile) beside PyTorch eager on the same GPU
#    (f32, then bf16), and the 2-thread CPU figure, on the reference config
#    (vocab 512, d_model 256, 4 layers, 4 heads, context 256, batch 16) and
#    the large one (d_model 512, 8 layers, 8 heads, context 1024, batch 32).
#
#   scripts/gpu-check.sh [pipeline|bench|all]     (default: all)
#
# Environment: VGMAKE_BIN / BENCH_TRAIN use prebuilt binaries (skip the
# build); GPU_STEPS (default 10) and CPU_STEPS (default 2) timed steps;
# SKIP_CPU=1 leaves out the CPU figures (the large one takes minutes);
# PYTHON (default python3) with torch for the PyTorch side (`pip install
# torch`; skipped with a message where missing).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
what=${1:-all}
gpu_steps=${GPU_STEPS:-10}
cpu_steps=${CPU_STEPS:-2}
python=${PYTHON:-python3}

if ! nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv; then
    echo "gpu-check: nvidia-smi finds no GPU; this script needs an NVIDIA GPU and its driver" >&2
    exit 1
fi

vgmake=${VGMAKE_BIN:-}
bench=${BENCH_TRAIN:-}
if [ -z "$vgmake" ] || [ -z "$bench" ]; then
    source scripts/cuda-toolkit.sh
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/cuda}
    started=$SECONDS
    cargo build --release --features cuda -p vgmake
    cargo build --release --features vgmake-stages/cuda -p vgmake-stages --example bench_train
    echo "gpu-check: built with --features cuda in $((SECONDS - started)) s"
    vgmake=${vgmake:-$CARGO_TARGET_DIR/release/vgmake}
    bench=${bench:-$CARGO_TARGET_DIR/release/examples/bench_train}
fi

# Binaries built on another machine (scripts/cuda-build.sh) link cuBLAS,
# cuRAND, NVRTC and the CUDA runtime by soname; where the loader does not
# find one, look in the CUDA toolkit and in Python's NVIDIA wheels (PyTorch
# installs them) and add its folder to LD_LIBRARY_PATH.
find_cuda_libraries() { # binary
    local soname found places
    places=(/usr/local/cuda*/ /usr/local/nvidia/ /usr/lib/x86_64-linux-gnu/ /usr/lib64/)
    while read -r site; do places+=("$site/nvidia/"); done < <(
        "$python" -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null || true)
    for soname in $(ldd "$1" | awk '/not found/ {print $1}'); do
        found=$(find "${places[@]}" -name "$soname" -print -quit 2>/dev/null || true)
        if [ -z "$found" ]; then
            echo "gpu-check: $soname (needed by $1) is nowhere on this machine" >&2
            exit 1
        fi
        export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "gpu-check: $soname from $found"
    done
}
find_cuda_libraries "$vgmake"
find_cuda_libraries "$bench"

pipeline() {
    local project
    project=$(mktemp -d)
    cp pipeline.toml "$project/"
    export VGMAKE_DATA="$repo/data"
    echo "== the default pipeline on the GPU (project $project)"
    (cd "$project" && "$vgmake" build -v --set train.device=cuda --set sample.device=cuda)
    echo "== the same training key on the CPU, for the comparison"
    (cd "$project" && "$vgmake" build train --set train.device=cpu,cuda)
    (cd "$project" && "$vgmake" compare)
    (cd "$project" && "$vgmake" show train --set train.device=cuda) || true
}

# One benchmark line: tokens/s of `bench_train` or `train_torch.py`.
tokens_per_second() { # program args...
    local out
    if ! out=$("$@" 2>&1 | tail -1); then
        echo "failed: $out"
        return
    fi
    if [[ $out =~ =\ ([0-9]+)\ tokens/s ]]; then echo "${BASH_REMATCH[1]}"; else echo "failed: $out"; fi
}

# The last step's phases of a short `bench_train` run (forward, backward,
# optimizer, the device synchronised at each end): where a GPU step goes.
step_profile() { # args...
    VGMAKE_STEP_PROFILE=1 "$bench" "$@" 2>&1 | grep 'step profile' | tail -1 || true
}

bench_config() { # name context batch flags...
    local name=$1 context=$2 batch=$3
    shift 3
    local have_torch=1
    "$python" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || have_torch=0
    echo "== $name: context $context, batch $batch $*"
    for dtype in f32 bf16; do
        local v t=NA
        v=$(tokens_per_second "$bench" 1 "$gpu_steps" 2 "$context" "$batch" --device cuda --dtype "$dtype" "$@")
        if [ "$have_torch" = 1 ]; then
            t=$(tokens_per_second "$python" benches/train_torch.py 1 "$gpu_steps" 2 "$context" "$batch" \
                --device cuda --dtype "$dtype" "$@")
        fi
        printf '%-10s %-5s vgmake %10s tokens/s   PyTorch eager %10s tokens/s\n' "$name" "$dtype" "$v" "$t"
        printf '%-10s %-5s %s\n' "$name" "$dtype" "$(step_profile 1 3 1 "$context" "$batch" --device cuda --dtype "$dtype" "$@")"
    done
    [ "$have_torch" = 1 ] || echo "(PyTorch with CUDA not found for $python: pip install torch)"
    if [ "${SKIP_CPU:-0}" != 1 ]; then
        local c
        c=$(tokens_per_second "$bench" 2 "$cpu_steps" 1 "$context" "$batch" "$@")
        printf '%-10s %-5s vgmake on 2 CPU threads %10s tokens/s\n' "$name" f32 "$c"
    fi
}

bench() {
    bench_config reference 256 16
    bench_config large 1024 32 --d-model 512 --layers 8 --heads 8
}

case $what in
pipeline) pipeline ;;
bench) bench ;;
all)
    pipeline
    bench
    ;;
*)
    echo "usage: scripts/gpu-check.sh [pipeline|bench|all]" >&2
    exit 2
    ;;
esac
