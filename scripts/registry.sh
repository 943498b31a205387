#!/usr/bin/env bash
# Runs a local image registry (CNCF distribution, Debian package docker-registry) on
# http://127.0.0.1:5000 with htpasswd auth. The password of its one user is generated
# once and kept root-only in /var/lib/imagebuilder/registry-password; scripts/env.sh
# exports it. Started only when nothing answers on /v2/.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_root
take_lock registry

CONFIG=$IB_STATE_DIR/registry.yml
HTPASSWD=$IB_STATE_DIR/registry.htpasswd
STORAGE=$IB_STATE_DIR/registry
PIDFILE=$IB_STATE_DIR/registry.pid
LOGFILE=$IB_LOG_DIR/registry.log

# HTTP status of /v2/: 401 (ours, auth on), 200 (a registry without auth), 000 (nothing).
registry_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$IB_REGISTRY_ADDR/v2/" || true; }
registry_down() { [[ $(registry_status) == 000 ]]; }
registry_up() { [[ $(registry_status) == 401 ]]; }

install -d -m 755 "$IB_STATE_DIR" "$IB_LOG_DIR"
install -d -m 700 "$STORAGE"

if [[ ! -s $IB_REGISTRY_PASSWORD_FILE ]]; then
    log "generating the registry password ($IB_REGISTRY_PASSWORD_FILE)"
    (umask 077 && random_password >"$IB_REGISTRY_PASSWORD_FILE")
fi
chmod 600 "$IB_REGISTRY_PASSWORD_FILE"
password=$(cat "$IB_REGISTRY_PASSWORD_FILE")

# distribution re-reads the htpasswd file when it changes, so fixing it needs no restart.
if ! htpasswd -vb "$HTPASSWD" "$IB_REGISTRY_USER" "$password" >/dev/null 2>&1; then
    log "writing $HTPASSWD"
    (umask 077 && htpasswd -Bbn "$IB_REGISTRY_USER" "$password" >"$HTPASSWD.new")
    mv "$HTPASSWD.new" "$HTPASSWD"
fi

config_changed=0
write_if_changed "$CONFIG" <<EOF && config_changed=1
# Written by scripts/registry.sh
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $STORAGE
  # Lets tests and the app remove what they pushed.
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $IB_REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic
    path: $HTPASSWD
EOF

our_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ -n $pid ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "docker-registry serve $CONFIG" && echo "$pid"
}

if ((config_changed)) && pid=$(our_pid); then
    log "registry config changed: restarting (pid $pid)"
    kill "$pid"
    wait_until 30 "registry to stop" bash -c "! kill -0 $pid"
fi

# The Debian package starts a registry of its own on :5000 (all interfaces, another
# config) where systemd or a permissive policy-rc.d lets it; ours is the one the app is
# configured for. Returns 1 when the packaged one is not running.
stop_packaged_registry() {
    if [[ -d /run/systemd/system ]] && systemctl is-active --quiet docker-registry 2>/dev/null; then
        log "stopping and disabling the packaged docker-registry.service"
        systemctl disable --now docker-registry
    elif [[ -x /etc/init.d/docker-registry ]] && /etc/init.d/docker-registry status >/dev/null 2>&1; then
        log "stopping the packaged docker-registry (init script)"
        /etc/init.d/docker-registry stop
    else
        return 1
    fi
}

credentials_work() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$IB_REGISTRY_USER:$password" \
        "http://$IB_REGISTRY_ADDR/v2/") == 200 ]]
}

status=$(registry_status)
if [[ $status == 200 || $status == 401 ]]; then
    # The registry re-reads a changed htpasswd file on its next request: allow a moment.
    if wait_until 5 "registry to accept the credentials" credentials_work; then
        log "registry: already answers on $IB_REGISTRY_ADDR (HTTP $status)"
        exit 0
    fi
    stop_packaged_registry ||
        die "a registry on $IB_REGISTRY_ADDR rejects the credentials in $IB_REGISTRY_PASSWORD_FILE and is not ours; stop it"
    wait_until 30 "the packaged registry to stop" registry_down
fi

log "registry: starting on $IB_REGISTRY_ADDR (log: $LOGFILE)"
start_daemon "$LOGFILE" docker-registry serve "$CONFIG" >"$PIDFILE"
if ! wait_until 30 "registry on $IB_REGISTRY_ADDR" registry_up; then
    tail -n 20 "$LOGFILE" >&2
    die "registry did not come up"
fi
log "registry: up"
