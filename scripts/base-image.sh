#!/usr/bin/env bash
# Provides the base image localhost/debian:bookworm in the build user's rootless storage.
# No container registry is reachable, so the image is made here with debootstrap (with
# Python, pip and venv, which most builds want). The root filesystem is cached as a
# tarball machine-wide, so a fresh clone or a storage reset only re-imports it.
#   usage: scripts/base-image.sh [--refresh]   (--refresh: debootstrap again)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
TARBALL=$IB_CACHE_DIR/debian-$SUITE.tar

refresh=0
[[ ${1:-} == --refresh ]] && refresh=1

require_root
id "$IB_BUILD_USER" >/dev/null 2>&1 || die "no user $IB_BUILD_USER: run scripts/podman-rootless.sh first"
take_lock base-image

make_tarball() {
    local root
    install -d -m 755 "$IB_CACHE_DIR"
    root=$(mktemp -d "$IB_CACHE_DIR/rootfs.XXXXXX")
    # A half-made root filesystem is never left behind, nor a half-written tarball used.
    trap 'rm -rf "$root" "$TARBALL.tmp"' EXIT
    log "debootstrap $SUITE from $MIRROR (about a minute)"
    local start=$SECONDS
    debootstrap --variant=minbase --include=python3-pip,python3-venv,ca-certificates \
        "$SUITE" "$root" "$MIRROR" >"$IB_LOG_DIR/debootstrap.log" 2>&1 || {
        tail -n 20 "$IB_LOG_DIR/debootstrap.log" >&2
        die "debootstrap failed (full log: $IB_LOG_DIR/debootstrap.log)"
    }
    log "debootstrap took $((SECONDS - start))s"
    # Downloaded .debs are dead weight in every layer built on top. The host's resolv.conf
    # and hostname don't belong in an image: podman provides both at run time.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
    : >"$root/etc/resolv.conf"
    rm -f "$root/etc/hostname"
    tar --numeric-owner --xattrs -C "$root" -cf "$TARBALL.tmp" .
    chmod 644 "$TARBALL.tmp"
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$root"
    trap - EXIT
    log "cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
}

if ((refresh)) || [[ ! -s $TARBALL ]]; then
    make_tarball
    # A refreshed tarball replaces the imported image too.
    as_build_user podman rmi --force "$IB_BASE_IMAGE" >/dev/null 2>&1 || true
fi

if as_build_user podman image exists "$IB_BASE_IMAGE"; then
    log "$IB_BASE_IMAGE already in $IB_BUILD_USER's storage"
    exit 0
fi

log "importing $TARBALL as $IB_BASE_IMAGE for $IB_BUILD_USER"
as_build_user podman import --quiet --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE" "$TARBALL" "$IB_BASE_IMAGE" >/dev/null
as_build_user podman image exists "$IB_BASE_IMAGE" || die "import of $IB_BASE_IMAGE failed"
log "$IB_BASE_IMAGE imported"
