#!/usr/bin/env bash
# Installs the Debian packages the app and its tests need. Only what is missing: when
# everything is there it runs no apt at all, so re-running costs a dpkg query.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(
    # Rootless builds: runc because crun fails on this cgroups v1/v2 hybrid; uidmap for
    # newuidmap/newgidmap; fuse-overlayfs for kernels without native rootless overlay.
    podman buildah runc uidmap slirp4netns fuse-overlayfs
    # The Debian base image is made locally: no container registry is reachable.
    debootstrap
    # The local registry (CNCF distribution), its htpasswd file, and a client to inspect it.
    docker-registry apache2-utils skopeo
    # Browser tests (Playwright drives Debian's chromium; no browser download works here),
    # with a CJK font so the Traditional Chinese pages render (no tofu boxes in screenshots).
    chromium fonts-dejavu-core fonts-noto-cjk
    redis-server postgresql
    ca-certificates curl git
)

require_root

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    log "all system packages present"
    exit 0
fi

take_lock apt
log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg (unattended upgrades, a second run) instead of failing.
apt_opts=(-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold)
apt-get "${apt_opts[@]}" update -qq
apt-get "${apt_opts[@]}" install -y -q "${missing[@]}"
log "system packages installed"
