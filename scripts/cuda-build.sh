#!/usr/bin/env bash
# Builds `vgmake` and the `bench_train` example with `--features cuda` on a
# machine that has no CUDA libraries (no GPU, no driver), to carry the
# binaries to a GPU machine that has no Rust toolchain:
#
#   scripts/cuda-build.sh        -> target/cuda/release/vgmake
#                                   target/cuda/release/examples/bench_train
#                                   target/cuda/dist/{vgmake,bench_train}
#                                   (the same, stripped: 64 and 52 MB, not 183
#                                   and 152; xz makes them 10 and 6)
#   scripts/gpu-check.sh         (there, with VGMAKE_BIN and BENCH_TRAIN set)
#
# candle links cudarc with `dynamic-linking`: the link step wants libcuda,
# libcublas, libcublasLt, libcurand and libnvrtc, and candle's kernels
# libcudart. The pinned toolkit wheels (scripts/cuda-toolkit.sh) bring
# nvcc and libcudart only, so this script writes link stubs for the others
# into target/cuda-stubs: empty shared libraries with the real sonames and
# every function cudarc's bindings declare, the same thing as the CUDA
# toolkit's own lib/stubs/libcuda.so. They are searched last, after any real
# library; the binaries load the real ones on the GPU machine (the driver's
# libcuda.so.1, cuBLAS from the toolkit or PyTorch's wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-toolkit.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/cuda}"

cudarc=$(cargo metadata --format-version 1 --features cuda |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc").rsplit("/", 1)[0])')
stubs=$PWD/target/cuda-stubs
mkdir -p "$stubs"
# module of cudarc's bindings -> the soname the real library has
for pair in driver:libcuda.so.1 cublas:libcublas.so.13 cublaslt:libcublasLt.so.13 \
    curand:libcurand.so.10 nvrtc:libnvrtc.so.13; do
    module=${pair%%:*} soname=${pair#*:}
    grep -oE '^pub unsafe fn [A-Za-z0-9_]+' "$cudarc/src/$module/sys/mod.rs" |
        sed -E 's/^pub unsafe fn (.*)/void \1(void) {}/' | sort -u >"$stubs/$module.c"
    cc -shared -fPIC -Wl,-soname,"$soname" -o "$stubs/${soname%%.so*}.so" "$stubs/$module.c"
done
# candle-kernels asks for plain -lcudart; the wheel has only the soname.
cudart=$(find "${CUDA_HOME:-/usr/local/cuda}" -name 'libcudart.so.13' -print -quit 2>/dev/null || true)
if [ -n "$cudart" ]; then ln -sf "$cudart" "$stubs/libcudart.so"; fi
export LIBRARY_PATH="${LIBRARY_PATH:+$LIBRARY_PATH:}$stubs"

started=$SECONDS
cargo build --release --features cuda -p vgmake
cargo build --release --features vgmake-stages/cuda -p vgmake-stages --example bench_train
dist=$CARGO_TARGET_DIR/dist
mkdir -p "$dist"
strip -o "$dist/vgmake" "$CARGO_TARGET_DIR/release/vgmake"
strip -o "$dist/bench_train" "$CARGO_TARGET_DIR/release/examples/bench_train"
echo "cuda-build: built in $((SECONDS - started)) s; stripped copies to carry:"
ls -l "$dist/vgmake" "$dist/bench_train"
