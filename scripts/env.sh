#!/usr/bin/env bash
# The environment the app, the worker and the tests need to reach the services that
# scripts/services.sh and scripts/base-image.sh set up. A value already set in the
# environment wins.
#   . scripts/env.sh        exports the variables into the current shell
#   bash scripts/env.sh     prints them as `export NAME=value` lines
#
# Sourcing must not change the options of the caller's shell (an interactive shell with
# `set -e` would close at its next failing command), so strict mode applies only when
# this file runs as a script.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
fi

_ib_env() {
    local user=${BUILD_USER:-imagebuilder} uid password=""
    # The registry password file is root-only; without it the registry variables for
    # the user name stay, and pushes fail with 401 rather than silently.
    password=$(cat /var/lib/imagebuilder/registry-password 2>/dev/null) || password=""

    local -a pairs=(
        REGISTRY 127.0.0.1:5000/imagebuilder
        REGISTRY_USERNAME imagebuilder
        REGISTRY_PASSWORD "$password"
        # The local registry speaks plain http.
        REGISTRY_TLS_VERIFY false
        # Builds hand the host's CA bundle to pip: PyPI is reached through a proxy whose
        # CA is in it and not in a fresh Debian image.
        BUILD_CA_BUNDLE /etc/ssl/certs/ca-certificates.crt
        IMAGEBUILDER_TEST_BASE localhost/debian:bookworm
        REDIS_URL redis://127.0.0.1:6379/0
        TEST_POSTGRES_URL postgresql://postgres@127.0.0.1:5432/imagebuilder_test
    )
    if uid=$(id -u "$user" 2>/dev/null); then
        pairs+=(PODMAN_URL "unix:///run/user/$uid/podman/podman.sock")
    fi
    # The second build host of the shared-cache tests (podman-rootless.sh --second-host).
    if uid=$(id -u imagebuilder-b 2>/dev/null); then
        pairs+=(SECOND_PODMAN_URL "unix:///run/user/$uid/podman/podman.sock")
    fi

    local i name
    for ((i = 0; i < ${#pairs[@]}; i += 2)); do
        name=${pairs[i]}
        # An empty value (no password readable) sets nothing rather than an empty variable.
        if [[ -z ${!name+set} && -n ${pairs[i + 1]} ]]; then
            export "$name=${pairs[i + 1]}"
        fi
        if [[ ${1:-} == print && -n ${!name+set} ]]; then
            printf 'export %s=%q\n' "$name" "${!name}"
        fi
    done
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    _ib_env print
else
    _ib_env
fi
unset -f _ib_env
