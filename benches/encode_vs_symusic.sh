#!/usr/bin/env bash
# Encode speed beside symusic, and through the engine beside the codec alone:
#
#   benches/encode_vs_symusic.sh [PAIRS] [CORPUS]      (default 7 pairs, ../shared/corpus)
#
# 1. Codec vs symusic, alternated PAIRS times: vgmake's `bench_encode`
#    (parse + tokenize, 1 thread, files in memory, one run of 10 rounds over
#    the corpus), once producing token lines (text) and once token codes
#    (numbers: what the encode stage keeps), then `benches/encode_symusic.py` (symusic's
#    `Score.from_midi`, parse only, 1 thread, the same files in memory, 10
#    rounds). Prints each one's median files/s, the ratios of medians, and
#    the median of each round's own ratio (codes / symusic).
#    symusic is optional: `pip install symusic`; without it this part says
#    so and is skipped.
# 2. Engine vs codec: `vgmake build -j1 encode` from an empty cache on a
#    pipeline whose scrape source is CORPUS, PAIRS times, alternated with a
#    `bench_encode` run; prints the encode stage's seconds (as the build
#    reports them in --json) and the whole command's wall time, beside the codec's
#    time for the same files (file count / its files/s, token codes as the stage
#    makes them), and their ratios. The stage's seconds run from the engine
#    starting it to its record written: verifying its input, reading and
#    encoding every file once (a cold pass, every song kept for the song
#    set), the memo, the outputs and the commit; the codec's are a warm loop
#    (10 rounds over files already in memory), so the ratio counts the cold
#    pass against the stage; and the median of each run's own ratio to the
#    codec run beside it. The last run's own log (`read and encoded ...`,
#    `ran in ..., stored in ...`) is printed to split the stage's time.
#    Also alternated: `encode_one_pass`, the codec as the stage runs it (one
#    pass in a fresh process, every song kept): the stage over it is what
#    the engine adds (reading, hashing, memo, outputs, commit), and it over
#    the warm loop is what a single cold pass costs by itself.
#
# Load average (/proc/loadavg) is printed before and after: on a shared
# machine, compare only numbers of one run.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-7}
CORPUS=$(realpath "${2:-../shared/corpus}")
[ -d "$CORPUS" ] || { echo "no $CORPUS: the real corpus is needed"; exit 1; }
cargo build --release --quiet
cargo build --release --quiet -p vgmake-stages --example bench_encode --example encode_one_pass
VGMAKE=$PWD/target/release/vgmake
BENCH=$PWD/target/release/examples/bench_encode
ONE_PASS=$PWD/target/release/examples/encode_one_pass
PY=${PYTHON:-python3}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The ratios of two lists, item by item (runs of one round: a drifting
# machine moves both alike), as a list.
paired() { paste <(echo "$1" | tr ' ' '\n' | grep -v '^$') <(echo "$2" | tr ' ' '\n' | grep -v '^$') |
    awk '{printf "%.3f ", $1 / $2}'; }
range() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[1] "-" a[NR]}'; }
codec_rate() { "$BENCH" "$CORPUS" 1 1 "${1:-line}" | awk '/thread/ {print $4}'; }

echo "load before: $(cat /proc/loadavg)"
FILES=$("$BENCH" "$CORPUS" 1 1 | awk '/^corpus/ {print $3}')
echo "corpus: $CORPUS, $FILES files"

# 1. codec vs symusic
have_symusic=1
"$PY" -c 'import symusic' 2>/dev/null || have_symusic=0
vg="" vc="" sy=""
for _ in $(seq "$PAIRS"); do
    vg+="$(codec_rate line) "
    vc+="$(codec_rate codes) "
    if [ $have_symusic = 1 ]; then sy+="$("$PY" benches/encode_symusic.py "$CORPUS" 10) "; fi
done
VG=$(echo "$vg" | median)
VC=$(echo "$vc" | median)
echo "vgmake bench_encode, 1 thread (parse + tokenize to text lines): median $VG files/s (range $(echo "$vg" | range), $PAIRS runs)"
echo "vgmake bench_encode, 1 thread (parse + tokenize to token codes): median $VC files/s (range $(echo "$vc" | range), $PAIRS runs)"
if [ $have_symusic = 1 ]; then
    SY=$(echo "$sy" | median)
    echo "symusic $("$PY" -c 'import symusic; print(symusic.__version__)') Score.from_midi, 1 thread (parse only): median $SY files/s (range $(echo "$sy" | range), $PAIRS runs)"
    echo "ratio vgmake / symusic: lines $(awk -v a="$VG" -v b="$SY" 'BEGIN {printf "%.2f", a / b}'), codes $(awk -v a="$VC" -v b="$SY" 'BEGIN {printf "%.2f", a / b}')"
    PC=$(paired "$vc" "$sy")
    echo "paired (each round's codes / its symusic run): median $(echo "$PC" | median) (range $(echo "$PC" | range))"
else
    echo "symusic: not installed, skipped (pip install symusic)"
fi

# 2. engine vs codec
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/pipeline.toml" <<TOML
[stages.scrape]
source = "$CORPUS"
[stages.encode]
deps = ["scrape"]
TOML
stage="" wall="" codec="" pass=""
for _ in $(seq "$PAIRS"); do
    rm -rf "$WORK/cache" "$WORK/out"
    t0=$(date +%s%N)
    line=$(cd "$WORK" && "$VGMAKE" build -j1 --json encode 2>/dev/null | grep '"name":"encode"')
    t1=$(date +%s%N)
    stage+="$(echo "$line" | sed -E 's/.*"seconds":([0-9.e-]+).*/\1/' | awk '{printf "%.3f", $1}') "
    wall+="$(( (t1 - t0) / 1000000 )) "
    codec+="$(codec_rate codes) "
    pass+="$("$ONE_PASS" "$CORPUS" | awk '{printf "%.4f", $(NF - 1) / 1000}') "
done
ST=$(echo "$stage" | median)
WL=$(echo "$wall" | median)
CR=$(echo "$codec" | median)
CS=$(awk -v f="$FILES" -v r="$CR" 'BEGIN {printf "%.3f", f / r}')
echo "engine: vgmake build -j1 encode, empty cache: encode stage median ${ST} s (range $(echo "$stage" | range)), whole command median ${WL} ms (range $(echo "$wall" | range)), $PAIRS runs"
echo "codec alone on the same $FILES files (1 thread, in memory, token codes): ${CS} s (median $CR files/s)"
LOG=$(grep -l 'read and encoded' "$WORK"/cache/logs/*/*.log | head -1)
echo "the last run's encode log: $(grep -E 'read and encoded|stored in' "$LOG" | tr '\n' ' ')"
echo "ratio engine / codec: stage $(awk -v a="$ST" -v b="$CS" 'BEGIN {printf "%.2f", a / b}'), whole command $(awk -v a="$WL" -v b="$CS" 'BEGIN {printf "%.2f", a / 1000 / b}')"
codec_s=$(for r in $codec; do awk -v f="$FILES" -v r="$r" 'BEGIN {printf "%.4f ", f / r}'; done)
PS=$(paired "$stage" "$codec_s")
echo "paired (each run's stage / the codec run beside it): median $(echo "$PS" | median) (range $(echo "$PS" | range))"
OP=$(echo "$pass" | median)
echo "codec in one cold pass, songs kept (encode_one_pass, a fresh process each run): median ${OP} s (range $(echo "$pass" | range))"
PE=$(paired "$stage" "$pass")
PF=$(paired "$pass" "$codec_s")
echo "paired: stage / one pass (what the engine adds) median $(echo "$PE" | median) (range $(echo "$PE" | range)); one pass / warm loop median $(echo "$PF" | median) (range $(echo "$PF" | range))"
echo "load after: $(cat /proc/loadavg)"
