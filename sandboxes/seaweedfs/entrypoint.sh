#!/bin/sh
# SeaweedFS for docker-compose.yml: writes the S3 identities file from S3_ACCESS_KEY_ID and
# S3_SECRET_ACCESS_KEY (refusing to start without them: SeaweedFS with no identities lets
# anyone write), starts `weed server` with its S3 gateway, creates S3_BUCKET once the filer
# answers, then marks itself ready (/run/seaweedfs/ready, the compose health check).
#
# Only the S3 port listens on the container's addresses. Master, volume and filer listen on
# the container's loopback: the filer's own HTTP port does not check S3 credentials.
set -eu
: "${S3_BUCKET:=warden}"
if [ -z "${S3_ACCESS_KEY_ID:-}" ] || [ -z "${S3_SECRET_ACCESS_KEY:-}" ]; then
    echo "warden-seaweedfs: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY" >&2
    exit 1
fi
ready=/run/seaweedfs/ready
ids=/run/seaweedfs/identities.json
rm -f "$ready"
(umask 077 && python3 -c '
import json, os, sys
ident = {"name": "warden", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
         "credentials": [{"accessKey": os.environ["S3_ACCESS_KEY_ID"],
                          "secretKey": os.environ["S3_SECRET_ACCESS_KEY"]}]}
json.dump({"identities": [ident]}, open(sys.argv[1], "w"))' "$ids")

# Warnings and errors on stderr (the container's log); the rest in small rotated files.
weed -alsologtostderr=false -stderrthreshold=WARNING -logdir=/run/seaweedfs \
    -log_max_size_mb=16 -log_max_files=2 \
    server -dir=/data -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3 -s3.ip.bind=0.0.0.0 -s3.port=8333 \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$ids" \
    -master.volumeSizeLimitMB=256 -volume.max=0 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT

shell() { echo "$1" | timeout 10 weed shell -master=127.0.0.1:9333 2>&1; }
listening() { python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8333), 1).close()' 2>/dev/null; }
tries=0
until shell s3.bucket.list | grep -q "^  $S3_BUCKET[[:space:]]" && listening; do
    kill -0 "$pid" 2>/dev/null || { echo "warden-seaweedfs: weed server exited" >&2; exit 1; }
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ]; then
        echo "warden-seaweedfs: the bucket could not be created" >&2
        kill -TERM "$pid"
        exit 1
    fi
    shell "s3.bucket.create -name $S3_BUCKET" >/dev/null || true
    sleep 1
done
touch "$ready"
echo "warden-seaweedfs: ready, bucket $S3_BUCKET"
# Stays in the foreground with weed. A stop signal is passed on; `weed server` stops its parts
# but may linger after that, holding nothing, so it is killed after a few seconds.
wait "$pid" || true
for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 "$pid" 2>/dev/null || exit 0
    sleep 0.5
done
kill -KILL "$pid" 2>/dev/null || true
