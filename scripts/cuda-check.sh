#!/usr/bin/env bash
# Compile check of the `cuda` feature on a machine without a GPU:
# `cargo check --release --features cuda`. candle's build scripts run nvcc on
# its kernels (PTX for sm_90, plus a static library of its MoE kernels), so
# the toolkit must be there; scripts/cuda-toolkit.sh installs it from pip
# where nvcc is missing. No link step, no driver, no GPU needed.
#
# Own target folder (target/cuda-check), so the normal release build is
# never invalidated. CUDA_COMPUTE_CAP=90 (H100/H200) stands in for the
# nvidia-smi query there is no GPU for. Extra arguments go to cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-toolkit.sh
export CARGO_TARGET_DIR="${CUDA_CHECK_TARGET_DIR:-$PWD/target/cuda-check}"
nvcc --version | tail -2
started=$SECONDS
cargo check --release --features cuda --workspace --all-targets "$@"
echo "cuda-check: \`cargo check --release --features cuda\` passed in $((SECONDS - started)) s"
