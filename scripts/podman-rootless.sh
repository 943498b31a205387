#!/usr/bin/env bash
# Sets up rootless Podman for the build user and starts its API service:
#   unix:///run/user/<uid>/podman/podman.sock
# The worker runs as root (the machine's Python lives under /root, unreadable to other
# users) and talks to this socket; root can open it whatever its mode.
# Idempotent: config files are rewritten only when they differ, and the service is
# started only when its socket does not answer.
#   usage: scripts/podman-rootless.sh [--second-host]
# --second-host sets up a second build user (IB_SECOND_BUILD_USER) with storage and a
# service of its own: a second "build host" on this machine, for the tests of the shared
# layer cache (scripts/test). scripts/run keeps one host.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_root
if [[ ${1:-} == --second-host ]]; then
    IB_BUILD_USER=$IB_SECOND_BUILD_USER
fi
take_lock podman

# Per user: BUILD_USER may name another user (a second setup beside the first).
PIDFILE=$IB_STATE_DIR/podman-service-$IB_BUILD_USER.pid
LOGFILE=$IB_LOG_DIR/podman-service-$IB_BUILD_USER.log

ensure_user() {
    if ! id "$IB_BUILD_USER" >/dev/null 2>&1; then
        log "creating user $IB_BUILD_USER"
        useradd -m -s /bin/bash "$IB_BUILD_USER"
    fi
    # useradd normally allocates these; a user made some other way may lack them, and
    # rootless Podman needs a range of subordinate ids to map image files onto.
    local db opt
    for db in subuid subgid; do
        grep -q "^$IB_BUILD_USER:" "/etc/$db" 2>/dev/null && continue
        local start
        start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' "/etc/$db" 2>/dev/null || echo 100000)
        [[ $db == subuid ]] && opt=--add-subuids || opt=--add-subgids
        log "adding /etc/$db range $start-$((start + 65535)) for $IB_BUILD_USER"
        usermod "$opt" "$start-$((start + 65535))" "$IB_BUILD_USER"
    done
}

# Prints "changed" if any config file was rewritten.
write_configs() {
    local home conf changed=0
    home=$(build_user_home)
    conf=$home/.config/containers
    install -d -o "$IB_BUILD_USER" -g "$IB_BUILD_USER" "$home/.config" "$conf"

    # overlay, not vfs: vfs (the rootless default) copies every layer in full.
    # Native rootless overlay needs Linux >= 5.13; older kernels go through fuse-overlayfs.
    local mount_program=""
    if ! printf '%s\n' 5.13 "$(uname -r | cut -d- -f1)" | sort -V -C; then
        mount_program='mount_program = "/usr/bin/fuse-overlayfs"'
    fi
    write_if_changed "$conf/storage.conf" <<EOF && changed=1
# Written by scripts/podman-rootless.sh
[storage]
driver = "overlay"

[storage.options.overlay]
$mount_program
EOF

    # runc: crun fails here ("cgroups in hybrid mode not supported").
    # netns host: slirp4netns cannot open /dev/net/tun as an unprivileged user.
    # cgroupfs + file events: there is no systemd user session to talk to.
    write_if_changed "$conf/containers.conf" <<'EOF' && changed=1
# Written by scripts/podman-rootless.sh
[containers]
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF

    # The local registry speaks plain http.
    write_if_changed "$conf/registries.conf" <<EOF && changed=1
# Written by scripts/podman-rootless.sh
unqualified-search-registries = []

[[registry]]
location = "$IB_REGISTRY_ADDR"
insecure = true

[[registry]]
location = "localhost:${IB_REGISTRY_ADDR##*:}"
insecure = true
EOF
    chown "$IB_BUILD_USER:" "$conf"/*.conf
    ((changed)) && echo changed
    return 0
}

ensure_runtime_dir() {
    local uid dir
    uid=$(build_user_uid)
    dir=/run/user/$uid
    # /run is a tmpfs: after a reboot this is gone. No pam_systemd creates it here.
    install -d -m 700 -o "$IB_BUILD_USER" -g "$IB_BUILD_USER" "$dir"
    install -d -m 700 -o "$IB_BUILD_USER" -g "$IB_BUILD_USER" "$dir/podman"
}

# The service we started, if it is still running.
our_service_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ -n $pid ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'podman system service' && echo "$pid"
}

stop_service() {
    local pid
    if pid=$(our_service_pid); then
        log "stopping podman service (pid $pid)"
        kill "$pid"
        wait_until 30 "podman service to stop" bash -c "! kill -0 $pid"
        rm -f "$PIDFILE"
    elif podman_ping; then
        log "warning: a podman service not started by this script holds $(podman_socket); restart it by hand to apply new settings"
    fi
}

graph_driver() { as_build_user podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null; }

# Storage first made with vfs (podman's rootless default) keeps vfs whatever storage.conf
# says, and podman refuses to mix drivers: wipe it so it is re-created as overlay.
ensure_overlay_storage() {
    local driver
    driver=$(graph_driver || true)
    [[ $driver == overlay ]] && return 0
    log "rootless storage uses '${driver:-unknown}', not overlay: resetting it"
    stop_service
    as_build_user podman system reset --force >/dev/null 2>&1 || true
    # Files in there belong to subordinate uids; root can remove them all.
    rm -rf "$(build_user_home)/.local/share/containers/storage" "/run/user/$(build_user_uid)/containers"
    driver=$(graph_driver) || {
        as_build_user podman info >/dev/null || true  # shows podman's own error
        die "podman info fails as $IB_BUILD_USER after the reset"
    }
    [[ $driver == overlay ]] || die "rootless storage driver is still '$driver'"
    log "rootless storage now overlay (images must be imported again)"
}

start_service() {
    local sock
    sock=$(podman_socket)
    if podman_ping; then
        log "podman: service already answers on $sock"
        return
    fi
    # A socket file left by a killed service would make the new one fail to bind.
    rm -f "$sock"
    # Builds run only through the service, so with none running, any build container
    # still in storage was left by a killed build (CI ends every process between runs).
    as_build_user buildah rm --all >/dev/null 2>&1 || true
    mkdir -p "$IB_LOG_DIR" "$IB_STATE_DIR"
    log "podman: starting rootless service on $sock (log: $LOGFILE)"
    # --time=0: never exit for idleness; the worker may be quiet for hours.
    build_user_prefix
    (cd / && start_daemon "$LOGFILE" "${BUILD_USER_CMD[@]}" \
        podman system service --time=0 "unix://$sock") >"$PIDFILE"
    wait_until 60 "podman service on $sock" podman_ping || {
        tail -n 20 "$LOGFILE" >&2
        die "podman service did not come up"
    }
    log "podman: up"
}

ensure_user
changed=$(write_configs)
ensure_runtime_dir
if [[ -n $changed ]]; then
    # Settings are read when a podman process starts; `system migrate` also restarts the
    # rootless pause process so a new runtime takes effect.
    log "podman config changed"
    stop_service
    as_build_user podman system migrate >/dev/null 2>&1 || true
fi
ensure_overlay_storage
start_service
