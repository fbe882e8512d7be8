#!/usr/bin/env bash
# The Slurm executor's cost, on a real cluster (scripts/slurm-local.sh for a
# local one), each pair of runs alternated so that both sides see the same
# machine:
#
# 1. overhead: one trivial stage (`echo hi > out.txt`) through Slurm, from
#    the command to the committed result, beside Snakemake's Slurm executor
#    (pip snakemake-executor-plugin-slurm, `--slurm-status-command squeue`,
#    and its first status check after 1 s instead of its default 40 s, its
#    best case) running the same rule;
# 2. a 4-variant sweep of a small `train` (2x2 `--set`): wall time with train
#    on Slurm (one array of 4 tasks, 1 CPU each) beside all of it local
#    (-j 2); the upstream stages come from the cache in both.
#
#   benches/slurm.sh [RUNS]          (default 5)
#
# Snakemake is optional: set SNAKEMAKE to its binary, or it is looked up on
# PATH and in /work/venv-smk; where absent its column is skipped, with how
# to install it (`pip install snakemake snakemake-executor-plugin-slurm`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
cargo build --release --quiet
VGMAKE=$PWD/target/release/vgmake
SNAKEMAKE=${SNAKEMAKE:-$(command -v snakemake || echo /work/venv-smk/bin/snakemake)}
[ -x "$SNAKEMAKE" ] || { echo "note: snakemake not found (pip install snakemake snakemake-executor-plugin-slurm); its column is skipped"; SNAKEMAKE=; }
scontrol ping | grep -q "is UP" || { echo "no Slurm controller answers (scripts/slurm-local.sh starts one)"; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# 1. One trivial stage.
mkdir -p "$WORK/vg" "$WORK/smk"
cat >"$WORK/vg/pipeline.toml" <<'EOF'
[stages.trivial]
kind = "command"
cmd = "echo hi > out.txt"
executor = "slurm"
EOF
cat >"$WORK/smk/Snakefile" <<'EOF'
rule trivial:
    output: "out.txt"
    shell: "echo hi > {output}"
EOF
: >"$WORK/t_vg"; : >"$WORK/t_smk"
for i in $(seq "$RUNS"); do
    rm -rf "$WORK/vg/cache" "$WORK/vg/out"
    t0=$(now); (cd "$WORK/vg" && "$VGMAKE" build >/dev/null 2>&1); t1=$(now)
    echo "$t1 - $t0" | bc >>"$WORK/t_vg"
    if [ -n "$SNAKEMAKE" ]; then
        rm -rf "$WORK/smk/out.txt" "$WORK/smk/.snakemake"
        t0=$(now)
        (cd "$WORK/smk" && "$SNAKEMAKE" --executor slurm -j1 --slurm-status-command squeue \
            --slurm-no-account --slurm-init-seconds-before-status-checks 1 \
            --default-resources slurm_partition=debug >/dev/null 2>&1)
        t1=$(now)
        [ -s "$WORK/smk/out.txt" ] || { echo "snakemake did not produce out.txt"; exit 1; }
        echo "$t1 - $t0" | bc >>"$WORK/t_smk"
    fi
done
vg=$(median <"$WORK/t_vg")
echo "trivial stage through Slurm, submit to committed, median of $RUNS (load $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "  vgmake    ${vg} s   (runs: $(paste -sd' ' "$WORK/t_vg"))"
if [ -n "$SNAKEMAKE" ]; then
    smk=$(median <"$WORK/t_smk")
    echo "  snakemake ${smk} s   (runs: $(paste -sd' ' "$WORK/t_smk"))"
    echo "  ratio vgmake/snakemake: $(echo "scale=3; $vg / $smk" | bc)"
fi

# 2. A 4-variant sweep of train.
data=$PWD/data/demo
mkdir -p "$WORK/sweep"
cat >"$WORK/sweep/pipeline.toml" <<EOF
[stages.scrape]
source = "$data"
[stages.encode]
deps = ["scrape"]
[stages.limit]
deps = ["encode"]
max_events = 6000
[stages.vocab]
deps = ["limit"]
[stages.train]
deps = ["vocab"]
d_model = 32
layers = 1
heads = 2
context = 64
batch = 8
steps = 300
eval_every = 100
eval_tokens = 2048
slurm = { cpus = 1 }
EOF
sweep=(--set train.lr=0.01,0.02 --set train.heads=2,4 --force train train)
(cd "$WORK/sweep" && "$VGMAKE" build "${sweep[@]}" >/dev/null 2>&1)
: >"$WORK/s_slurm"; : >"$WORK/s_local"
for i in $(seq "$RUNS"); do
    t0=$(now); (cd "$WORK/sweep" && "$VGMAKE" build --executor train=slurm "${sweep[@]}" >/dev/null 2>&1); t1=$(now)
    echo "$t1 - $t0" | bc >>"$WORK/s_slurm"
    t0=$(now); (cd "$WORK/sweep" && "$VGMAKE" build -j 2 "${sweep[@]}" >/dev/null 2>&1); t1=$(now)
    echo "$t1 - $t0" | bc >>"$WORK/s_local"
done
sl=$(median <"$WORK/s_slurm"); lo=$(median <"$WORK/s_local")
echo "4-variant train sweep, median of $RUNS (load $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "  train on Slurm (one array)  ${sl} s   (runs: $(paste -sd' ' "$WORK/s_slurm"))"
echo "  all local (-j 2)            ${lo} s   (runs: $(paste -sd' ' "$WORK/s_local"))"
echo "  ratio slurm/local: $(echo "scale=3; $sl / $lo" | bc)"
