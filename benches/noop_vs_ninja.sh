#!/usr/bin/env bash
# A no-op build over many real input files, vgmake beside ninja, alternated:
#
#   benches/noop_vs_ninja.sh [FILES] [RUNS]     (default 6000 files, 21 runs)
#
# The corpus is the real MIDI files of ../shared/corpus copied until there
# are FILES of them, each copy made distinct by an appended unknown chunk
# (`XVGM` + length + its number: the MIDI standard says readers skip chunks
# they do not know). vgmake builds scrape (that folder) -> encode -> limit
# -> vocab once, then `vgmake build vocab` is timed with nothing to do;
# ninja gets a build.ninja whose one edge lists the same FILES inputs and
# is timed the same way. ninja comes from apt-get (`ninja-build`); where
# absent its column is skipped with a message. Also prints strace's count
# of vgmake's system calls per no-op where strace is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-6000}
RUNS=${2:-21}
CORPUS_SRC=${CORPUS_SRC:-../shared/corpus}
[ -d "$CORPUS_SRC" ] || { echo "no $CORPUS_SRC: the real corpus is needed"; exit 1; }
# VGMAKE=path times another binary; WORK=dir keeps the corpus and the
# cache there and reuses them on the next run (KEEP=1: keep the temporary one).
if [ -z "${VGMAKE:-}" ]; then
    cargo build --release --quiet
    VGMAKE=$PWD/target/release/vgmake
fi
REUSE=
if [ -n "${WORK:-}" ]; then
    [ -d "$WORK/corpus" ] && REUSE=1
    mkdir -p "$WORK"
    echo "keeping $WORK"
else
    WORK=$(mktemp -d)
    [ -n "${KEEP:-}" ] && echo "keeping $WORK" || trap 'rm -rf "$WORK"' EXIT
fi

if [ -z "$REUSE" ]; then
mapfile -t real < <(find "$CORPUS_SRC" -name '*.mid' | sort)
mkdir -p "$WORK/corpus"
python3 - "$WORK/corpus" "$FILES" "${real[@]}" <<'EOF'
import os, struct, sys
out, n, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
datas = [open(f, 'rb').read() for f in files]
for i in range(n):
    src = i % len(files)
    d = os.path.join(out, f"c{i // 500:03d}")
    os.makedirs(d, exist_ok=True)
    tag = str(i).encode()
    with open(os.path.join(d, f"{i:05d}_{os.path.basename(files[src])}"), 'wb') as f:
        f.write(datas[src] + b"XVGM" + struct.pack(">I", len(tag)) + tag)
EOF
cat >"$WORK/pipeline.toml" <<EOF
[stages.scrape]
source = "$WORK/corpus"
[stages.encode]
deps = ["scrape"]
[stages.limit]
deps = ["encode"]
[stages.vocab]
deps = ["limit"]
EOF
fi
(cd "$WORK" && "$VGMAKE" build vocab >/dev/null 2>&1) || { echo "the first build failed"; exit 1; }

NINJA=$(command -v ninja || true)
if [ -n "$NINJA" ]; then
    mkdir -p "$WORK/ninja"
    {
        echo "rule stamp"
        echo "  command = touch \$out"
        printf 'build stamp: stamp'
        find "$WORK/corpus" -type f | sort | sed 's/^/ /' | tr -d '\n'
        echo
    } >"$WORK/ninja/build.ninja"
    (cd "$WORK/ninja" && ninja >/dev/null)
else
    echo "note: ninja not found (apt-get install ninja-build); its column is skipped"
fi

now() { date +%s%N; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
: >"$WORK/t_vg"; : >"$WORK/t_ninja"
for _ in $(seq "$RUNS"); do
    t0=$(now); (cd "$WORK" && "$VGMAKE" build vocab >/dev/null 2>&1); t1=$(now)
    echo $(((t1 - t0) / 1000)) >>"$WORK/t_vg"
    if [ -n "$NINJA" ]; then
        t0=$(now); (cd "$WORK/ninja" && ninja >/dev/null); t1=$(now)
        echo $(((t1 - t0) / 1000)) >>"$WORK/t_ninja"
    fi
done
vg=$(median <"$WORK/t_vg")
echo "no-op over $FILES files, median of $RUNS alternated runs (load $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "  vgmake build vocab  $((vg / 1000)).$(printf %03d $((vg % 1000))) ms"
if [ -n "$NINJA" ]; then
    nj=$(median <"$WORK/t_ninja")
    echo "  ninja               $((nj / 1000)).$(printf %03d $((nj % 1000))) ms"
    echo "  ratio vgmake/ninja: $(echo "scale=2; $vg / $nj" | bc)"
fi
if command -v strace >/dev/null; then
    (cd "$WORK" && strace -f -c -o "$WORK/strace.txt" "$VGMAKE" build vocab >/dev/null 2>&1)
    echo "  vgmake system calls per no-op: $(awk '/total/ { print $4 }' "$WORK/strace.txt") ($(awk '$NF == "statx" { print $4 " statx" } $NF == "write" { print $4 " write" } $NF == "fsync" { print $4 " fsync" }' "$WORK/strace.txt" | paste -sd, -))"
fi
