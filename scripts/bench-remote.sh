#!/usr/bin/env bash
# Remote cache benchmark: the default pipeline built on clone A (pushing to a
# local SeaweedFS), then fetched by clone B with an empty cache; no-op builds
# with and without the remote. Run from the repository root after
# `cargo build --release`.
set -euo pipefail
root=$(pwd)
bin=$root/target/release/vgmake
work=$(mktemp -d)
port=${PORT:-25333}
cleanup() { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"; true; }
trap cleanup EXIT
"$root/scripts/s3-local.sh" "$work/s3" "$port" vgmake >"$work/s3.out" 2>&1 &
server=$!
until grep -q serving "$work/s3.out" 2>/dev/null; do sleep 0.2; done
export VGMAKE_REMOTE=s3://vgmake/bench AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
for c in a b; do
    mkdir -p "$work/$c"
    cp "$root/pipeline.toml" "$work/$c/"
    ln -s "$root/data" "$work/$c/data"
done
now() { date +%s.%N; }
t0=$(now); (cd "$work/a" && "$bin" build -j2 2>&1 | tail -2); t1=$(now)
(cd "$work/b" && "$bin" build -j2 2>&1 | tail -2); t2=$(now)
bytes=$(du -sbL "$work/b/cache/outputs" | cut -f1)
noop() { local s e; s=$(now); (cd "$work/b" && "$bin" build "$@" >/dev/null 2>&1); e=$(now); echo "$e - $s" | bc -l; }
noop_remote=$(for _ in 1 2 3 4 5; do noop; done | sort -n | head -1)
noop_local=$(for _ in 1 2 3 4 5; do noop --no-remote; done | sort -n | head -1)
echo
printf 'build on A (runs and pushes): %.2f s\n' "$(echo "$t1 - $t0" | bc -l)"
printf 'build on B (fetches):         %.2f s  (%s bytes of outputs)\n' "$(echo "$t2 - $t1" | bc -l)" "$bytes"
printf 'ratio:                        %.1fx\n' "$(echo "($t1 - $t0) / ($t2 - $t1)" | bc -l)"
printf 'no-op build, remote on:       %.3f s (best of 5)\n' "$noop_remote"
printf 'no-op build, --no-remote:     %.3f s (best of 5)\n' "$noop_local"
