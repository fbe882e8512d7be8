#!/usr/bin/env bash
# The codec (MIDI read + tokenize) of another revision beside the working
# tree's, in one process, so that a change of a few percent can be seen on
# a noisy machine:
#
#   benches/codec_ab.sh [REV] [ROUNDS] [CORPUS]   (default HEAD, 30 rounds, ../shared/corpus)
#
# Copies REV's stages/src/midi to target/codec_ab/midi, builds the
# `codec_ab` example (feature `codec-ab`) with both codecs in it, checks
# that they give the same tokens on every file, then times ROUNDS rounds of
# one pass each, alternated (old / new: above 1 means the tree is faster).
# Two copies of the same code measured 0.98-1.07 this way on the project's
# VM (BENCHMARKS.md, session 15), so where valgrind is installed the script
# also counts each codec's instructions and L1 data misses over one pass
# (cachegrind, simulated 32 KiB L1 / 512 KiB L2): those move by 0.15%
# between two copies of the same code. Valgrind counts each byte that a
# `rep movs` / `rep stos` moves (large memcpy / memset) as an instruction.
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:-HEAD}
ROUNDS=${2:-30}
CORPUS=$(realpath "${3:-../shared/corpus}")
[ -d "$CORPUS" ] || { echo "no $CORPUS: a folder of MIDI files is needed"; exit 1; }
rm -rf target/codec_ab
mkdir -p target/codec_ab
git archive "$REV" stages/src/midi | tar -x -C target/codec_ab --strip-components=2
# git archive dates the files at REV's commit: touched, so that cargo
# rebuilds when the last run compared another revision.
find target/codec_ab -type f -exec touch {} +
cargo build --release --quiet -p vgmake-stages --features codec-ab --example codec_ab
BIN=target/release/examples/codec_ab
echo "codec at $REV ($(git rev-parse --short "$REV")) = old, working tree = new; load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" "$CORPUS" "$ROUNDS"
if command -v valgrind >/dev/null; then
    for side in old new; do
        valgrind --tool=cachegrind --cache-sim=yes --D1=32768,8,64 --LL=524288,8,64 \
            --cachegrind-out-file=/dev/null "$BIN" "$CORPUS" 0 "$side" 2>&1 |
            awk -v s="$side" '/I +refs/ {gsub(",", "", $4); i = $4} /D1  misses/ {gsub(",", "", $4); d = $4}
                END {printf "%s: %d instructions, %d L1 data misses (cachegrind, one pass)\n", s, i, d}'
    done
else
    echo "valgrind: not installed, no instruction counts (apt-get install valgrind)"
fi
