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

registry_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$IB_REGISTRY_ADDR/v2/" || true; }

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

# Where systemd runs, the Debian package starts its own registry on :5000 with another
# config; ours is the one the app is configured for.
if [[ -d /run/systemd/system ]] && systemctl is-active --quiet docker-registry 2>/dev/null; then
    log "stopping and disabling the packaged docker-registry.service"
    systemctl disable --now docker-registry
fi

status=$(registry_status)
case $status in
    200 | 401)
        log "registry: already answers on $IB_REGISTRY_ADDR (HTTP $status)"
        exit 0
        ;;
esac

log "registry: starting on $IB_REGISTRY_ADDR (log: $LOGFILE)"
start_daemon "$LOGFILE" docker-registry serve "$CONFIG" >"$PIDFILE"
if ! wait_until 30 "registry on $IB_REGISTRY_ADDR" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://$IB_REGISTRY_ADDR/v2/) == 401 ]]"; then
    tail -n 20 "$LOGFILE" >&2
    die "registry did not come up"
fi
log "registry: up"
