#!/usr/bin/env bash
# Makes sure a Docker Engine answers. Quick when one already does. As root on Debian, installs
# what is missing of docker.io, debootstrap (for the base image) and docker-compose (for
# docker-compose.yml and its test), and starts dockerd in the background when none answers;
# otherwise says how to get Docker and exits non-zero. `make test` and CI both call this, so
# they run the same tests.
set -euo pipefail

can_apt() { [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; }

# Debian packages for the commands not found: dockerd→docker.io, debootstrap, docker-compose.
missing_packages() {
    command -v dockerd >/dev/null 2>&1 || echo docker.io
    command -v debootstrap >/dev/null 2>&1 || echo debootstrap
    command -v docker-compose >/dev/null 2>&1 || echo docker-compose
}

install_missing() {
    local packages
    packages=$(missing_packages | tr '\n' ' ')
    [ -n "${packages// /}" ] || return 0
    echo "installing from Debian: $packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086 # one word per package
    apt-get -o DPkg::Lock::Timeout=600 install -y -q $packages >/dev/null 2>&1 || {
        apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
        apt-get -o DPkg::Lock::Timeout=600 install -y -q $packages >/dev/null
    }
}

if docker info >/dev/null 2>&1; then
    # The engine answers: what is missing besides it only skips some tests, so say so and go on.
    if can_apt; then
        install_missing || echo "warning: could not install $(missing_packages | tr '\n' ' ')" >&2
    fi
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

can_apt || how_to
install_missing

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
