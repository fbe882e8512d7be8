#!/usr/bin/env bash
# Training throughput, vgmake against PyTorch eager, side by side: runs
# vgmake's bench_train example and benches/train_torch.py (the same model,
# optimizer and step) alternately, in pairs (the first of a pair alternates
# too), prints each run with the load average beside it, then the medians, the
# ratio vgmake / PyTorch, and the median of each pair's own ratio (robust to a
# machine whose speed drifts during the run).
#
#   benches/train_vs_torch.sh [pairs] [threads] [steps] [warmup] [context] [batch] [flags...]
#
# Defaults: 5 pairs, 2 threads, 8 timed steps, 2 warm-up steps, the reference
# config (context 256, batch 16). The long-context config: context 1024,
# batch 4. PyTorch is optional (`pip install torch`); without it only vgmake
# runs. BENCH_TRAIN=path uses a prebuilt bench_train binary. Flags after the
# six numbers go to both programs: `--device cuda --dtype bf16 --d-model 512
# --layers 8 --heads 8` (a GPU needs BENCH_TRAIN from a `--features cuda`
# build; scripts/gpu-check.sh does that).
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=${1:-5}
threads=${2:-2}
steps=${3:-8}
warmup=${4:-2}
context=${5:-256}
batch=${6:-16}
args="$threads $steps $warmup $context $batch"
flags=("${@:7}")

bin=${BENCH_TRAIN:-}
if [ -z "$bin" ]; then
    cargo build --release -q -p vgmake-stages --example bench_train
    bin=target/release/examples/bench_train
fi
python=${PYTHON:-python3}
have_torch=1
if ! "$python" -c "import torch" 2>/dev/null; then
    have_torch=0
    echo "PyTorch not found for $python: install it with 'pip install torch' to compare;"
    echo "running vgmake alone."
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

run() { # side, command...
    local side=$1
    shift
    local load out
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    out=$("$@" 2>&1 | tail -1)
    if ! [[ $out =~ =\ ([0-9]+)\ tokens/s ]]; then
        echo "$side: no result: $out" >&2
        return 1
    fi
    local tps=${BASH_REMATCH[1]} rss=NA cpu=NA
    [[ $out =~ peak\ RSS\ ([0-9]+)\ MiB ]] && rss=${BASH_REMATCH[1]}
    [[ $out =~ CPU\ ([0-9.]+)\ s/step ]] && cpu=${BASH_REMATCH[1]}
    printf '%-8s %7s tokens/s  peak RSS %5s MiB  CPU %6s s/step  load %s\n' \
        "$side" "$tps" "$rss" "$cpu" "$load"
    echo "$side $tps $rss $cpu" >>"$log"
}

echo "config: threads $threads, context $context, batch $batch ${flags[*]}; $steps timed steps after $warmup"
for i in $(seq "$pairs"); do
    if [ "$have_torch" = 1 ] && [ $((i % 2)) = 0 ]; then
        run pytorch "$python" benches/train_torch.py $args "${flags[@]}"
        run vgmake "$bin" $args "${flags[@]}"
    else
        run vgmake "$bin" $args "${flags[@]}"
        [ "$have_torch" = 1 ] && run pytorch "$python" benches/train_torch.py $args "${flags[@]}"
    fi
done

middle() { # the median of the numbers on stdin (none: nothing)
    sort -g | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
median() { # side column
    awk -v s="$1" -v c="$2" '$1 == s && $c != "NA" { print $c }' "$log" | middle
}
echo "medians over $pairs runs each (load now $(cut -d' ' -f1-3 /proc/loadavg)):"
for side in vgmake pytorch; do
    [ "$side" = pytorch ] && [ "$have_torch" = 0 ] && continue
    printf '%-8s %7s tokens/s  peak RSS %5s MiB  CPU %s s/step\n' \
        "$side" "$(median $side 2)" "$(median $side 3)" "$(median $side 4)"
done
if [ "$have_torch" = 1 ]; then
    awk -v v="$(median vgmake 2)" -v p="$(median pytorch 2)" \
        -v vr="$(median vgmake 3)" -v pr="$(median pytorch 3)" \
        -v vc="$(median vgmake 4)" -v pc="$(median pytorch 4)" 'BEGIN {
        printf "ratio vgmake / PyTorch: %.2fx tokens/s; %.2fx CPU time per step; %.2fx peak RSS\n",
            v / p, vc / pc, vr / pr
    }'
    # Each pair's own ratio: its two runs are a minute apart, so a machine
    # whose speed drifts over the run moves both alike.
    ratios=$(awk '$1 == "vgmake" { v[++nv] = $2 } $1 == "pytorch" { p[++np] = $2 }
        END { for (i = 1; i <= nv && i <= np; i++) printf "%.4f\n", v[i] / p[i] }' "$log" | sort -g)
    awk -v m="$(echo "$ratios" | middle)" -v lo="$(echo "$ratios" | head -1)" \
        -v hi="$(echo "$ratios" | tail -1)" -v n="$(echo "$ratios" | wc -l)" 'BEGIN {
        printf "paired: the ratio of each pair, median %.2fx (range %.2f-%.2f, %d pairs)\n", m, lo, hi, n
    }'
fi
