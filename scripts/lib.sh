# shellcheck shell=bash disable=SC2034  # the IB_* settings are read by the scripts that source this
# Helpers shared by the scripts in this folder. Source it, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The scripts that source it already run under `set -euo pipefail`.

IB_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The unprivileged user whose rootless Podman runs the builds (config.py reads BUILD_USER too).
IB_BUILD_USER=${BUILD_USER:-imagebuilder}
# The second build host the shared-cache tests use (scripts/podman-rootless.sh --second-host).
IB_SECOND_BUILD_USER=imagebuilder-b

# Machine-wide state, shared by every clone of the repo on this machine, so a fresh
# clone (CI) reuses the registry, its password and the base image tarball.
IB_STATE_DIR=/var/lib/imagebuilder
IB_LOG_DIR=/var/log/imagebuilder
IB_CACHE_DIR=/var/cache/imagebuilder
IB_LOCK_DIR=/run/lock/imagebuilder

IB_REGISTRY_ADDR=127.0.0.1:5000
IB_REGISTRY_USER=imagebuilder
IB_REGISTRY_PASSWORD_FILE=$IB_STATE_DIR/registry-password
IB_BASE_IMAGE=localhost/debian:bookworm

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() {
    [[ $(id -u) -eq 0 ]] || die "run this as root (it installs packages and starts services)"
}

# Serialise one setup step across concurrent runs (scripts/run and scripts/test in two
# clones at once would otherwise both debootstrap, or both start a registry).
# Holds the lock on fd 9 until the calling script exits; start_daemon closes fd 9 so a
# long-lived service never inherits the lock.
take_lock() {
    mkdir -p "$IB_LOCK_DIR"
    exec 9>"$IB_LOCK_DIR/$1.lock"
    if ! flock -n 9; then
        log "waiting for another run holding the '$1' lock"
        flock 9
    fi
}

# Polls "$@" until it succeeds or TIMEOUT seconds have passed.
wait_until() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { log "timed out after ${timeout}s waiting for $what"; return 1; }
        sleep 0.5
    done
}

# Starts "$@" detached from this shell: new session, stdin from /dev/null, output to LOG,
# and no other inherited descriptor (the lock on fd 9 included). CI waits for its output
# pipes to close, so a daemon must never keep one open. Prints the daemon's pid.
start_daemon() {
    local logfile=$1
    shift
    mkdir -p "$(dirname "$logfile")"
    (
        for fd in "/proc/$BASHPID/fd/"*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-"; fi
        done
        exec setsid "$@" </dev/null >>"$logfile" 2>&1
    ) &
    echo $!
}

build_user_uid() { id -u "$IB_BUILD_USER"; }
build_user_home() { getent passwd "$IB_BUILD_USER" | cut -d: -f6; }
podman_socket() { echo "/run/user/$(build_user_uid)/podman/podman.sock"; }

# Sets BUILD_USER_CMD to the command prefix that runs a program as the build user, with
# the environment rootless Podman expects. setpriv execs directly (no PAM session, no
# parent process left behind), which suits daemons.
build_user_prefix() {
    local uid
    uid=$(build_user_uid)
    BUILD_USER_CMD=(
        setpriv --reuid="$uid" --regid="$(id -g "$IB_BUILD_USER")" --init-groups
        env -i HOME="$(build_user_home)" USER="$IB_BUILD_USER" LOGNAME="$IB_BUILD_USER"
        PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin
        XDG_RUNTIME_DIR="/run/user/$uid"
    )
    # Builds inherit the service's proxy settings (podman's httpProxy build default).
    local var
    for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        if [[ -n ${!var:-} ]]; then BUILD_USER_CMD+=("$var=${!var}"); fi
    done
}

# Runs "$@" as the build user. cwd is / because the caller's may be unreadable to that
# user (the machine's Python lives under /root, mode 700).
as_build_user() {
    build_user_prefix
    (cd / && exec "${BUILD_USER_CMD[@]}" "$@")
}

# True when the rootless Podman API answers on its socket.
podman_ping() {
    local sock
    sock=$(podman_socket) || return 1
    [[ -S $sock ]] && curl -fsS --max-time 5 --unix-socket "$sock" http://d/v4.0.0/libpod/_ping >/dev/null 2>&1
}

# Writes stdin to FILE only if the content differs; returns 0 when it changed the file.
write_if_changed() {
    local file=$1 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 1
    fi
    mkdir -p "$(dirname "$file")"
    mv "$tmp" "$file"
    chmod 644 "$file"
    return 0
}

# A random password (128 bits as hex: safe in URLs, YAML and htpasswd). od reads exactly
# what it needs, so no pipe is cut short (which pipefail would report as a failure).
random_password() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
