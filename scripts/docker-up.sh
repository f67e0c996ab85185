#!/usr/bin/env bash
# Makes sure a Docker Engine answers. Quick when one already does. When none answers and we
# run as root on Debian, installs docker.io (and debootstrap, for the base image) and starts
# dockerd in the background; otherwise says how to get Docker and exits non-zero.
set -euo pipefail

if docker info >/dev/null 2>&1; then
    command -v debootstrap >/dev/null 2>&1 || [ "$(id -u)" != 0 ] || {
        apt-get install -y -q debootstrap >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; }
    }
    exit 0
fi

how_to() {
    cat >&2 <<'MSG'
error: no Docker Engine answers (`docker info` failed).
Warden builds and runs its sandboxes on a local Docker Engine. Either:
  * start yours (e.g. `sudo systemctl start docker`) and make sure this user may use
    /var/run/docker.sock (e.g. `sudo usermod -aG docker $USER`, then log in again), or
  * on Debian, as root, run this script again: it installs `docker.io` and starts dockerd, or
  * install Docker Engine by hand: https://docs.docker.com/engine/install/
MSG
    exit 1
}

[ "$(id -u)" = 0 ] || how_to
[ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1 || how_to

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing docker.io and debootstrap from Debian…" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q docker.io debootstrap >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q docker.io debootstrap >/dev/null
    }
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "starting dockerd (log: /var/log/dockerd.log)…" >&2
    # No systemd on these machines: run it detached, outliving this script.
    setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
fi

for _ in $(seq 1 120); do
    if [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1; then
        echo "Docker Engine is up: $(docker version --format '{{.Server.Version}}')" >&2
        exit 0
    fi
    sleep 0.5
done
echo "error: dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
