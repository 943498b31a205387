#!/usr/bin/env bash
# Starts what the app and its tests talk to: Redis, PostgreSQL, the rootless Podman
# service and the local registry. A service that already answers is left alone, so
# re-running this when all is up only costs a few health checks.
#   usage: scripts/services.sh [redis|postgres|podman|registry ...]   (default: all)
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

PG_DATABASE=imagebuilder_test

start_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        log "redis: already up"
        return
    fi
    log "redis: starting"
    mkdir -p /var/lib/redis /var/log/redis
    # The same command the machine image uses: no persistence, nothing kept on disk.
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_until 30 redis redis-cli -h 127.0.0.1 -p 6379 ping
    log "redis: up"
}

pg_psql() { psql -h 127.0.0.1 -U postgres -w -X -q "$@"; }

start_postgres() {
    local version cluster_dir
    # Highest installed major version (normally the only one: 15 on bookworm).
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
    [[ -n $version ]] || die "postgres: no server installed (run scripts/install-system.sh)"
    cluster_dir=/etc/postgresql/$version/main
    if [[ ! -d $cluster_dir ]]; then
        log "postgres: creating cluster $version/main"
        pg_createcluster "$version" main
    fi

    if pg_isready -q -h 127.0.0.1; then
        log "postgres: already up"
    else
        # pg_createcluster picks the next free port (5433, ...) when 5432 is taken at
        # install time; the app and tests use 5432.
        local port
        port=$(pg_conftool -s "$version" main get port 2>/dev/null || echo 5432)
        if [[ $port != 5432 ]]; then
            log "postgres: cluster $version/main is set to port $port; moving it to 5432"
            pg_ctlcluster --skip-systemctl-redirect "$version" main stop >/dev/null 2>&1 || true
            pg_conftool "$version" main set port 5432
        fi
        log "postgres: starting $version/main"
        # --skip-systemctl-redirect: there is no systemd here (nor in CI).
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        wait_until 60 postgres pg_isready -q -h 127.0.0.1
        log "postgres: up"
    fi

    # The tests connect as postgres over TCP with no password. A fresh Debian install asks
    # for scram passwords on 127.0.0.1; trust on loopback only is the development setup
    # (the machine image for this project ships that way already).
    if ! pg_psql -c 'select 1' >/dev/null 2>&1; then
        log "postgres: allowing trust auth on loopback in $cluster_dir/pg_hba.conf"
        local hba=$cluster_dir/pg_hba.conf
        # First matching line wins in pg_hba.conf, so ours go on top.
        {
            echo "# imagebuilder (scripts/services.sh): passwordless loopback for development and tests"
            echo "host all all 127.0.0.1/32 trust"
            echo "host all all ::1/128 trust"
            cat "$hba"
        } >"$hba.new"
        chown --reference="$hba" "$hba.new"
        chmod --reference="$hba" "$hba.new"
        mv "$hba.new" "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload
        wait_until 30 "postgres trust auth" pg_psql -c 'select 1'
    fi

    if [[ $(pg_psql -tAc "select 1 from pg_database where datname = '$PG_DATABASE'") != 1 ]]; then
        log "postgres: creating database $PG_DATABASE"
        pg_psql -c "create database $PG_DATABASE"
    fi
}

main() {
    require_root
    local -a which=("$@")
    ((${#which[@]})) || which=(redis postgres podman registry)
    local svc
    for svc in "${which[@]}"; do
        case $svc in
            redis) start_redis ;;
            postgres) start_postgres ;;
            podman) bash "$here/podman-rootless.sh" ;;
            registry) bash "$here/registry.sh" ;;
            *) die "unknown service: $svc" ;;
        esac
    done
}

main "$@"
