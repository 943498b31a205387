#!/usr/bin/env bash
# Creates .venv and installs requirements.txt into it (with --dev, requirements-dev.txt
# too when it exists). A stamp file keeps the hash of what was installed: when the
# requirement files have not changed, this does nothing.
#   usage: scripts/python-env.sh [--dev]
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dev=0
[[ ${1:-} == --dev ]] && dev=1

cd "$IB_REPO_ROOT"
venv=.venv
stamp=$venv/.requirements.sha256
req_files=(requirements.txt)
if ((dev)) && [[ -f requirements-dev.txt ]]; then
    req_files+=(requirements-dev.txt)
fi
[[ -f requirements.txt ]] || die "requirements.txt not found in $IB_REPO_ROOT"

# The stamp covers the files' content and which files were asked for, so a --dev run
# after a plain one still installs the dev tools.
want=$(sha256sum "${req_files[@]}" | sha256sum | cut -d' ' -f1)

take_lock "python-env-$(echo "$IB_REPO_ROOT" | sha256sum | cut -c1-12)"

# A venv whose interpreter is gone (Python upgraded or moved) is rebuilt from scratch.
if [[ -d $venv ]] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "$venv is broken; recreating it"
    rm -rf "$venv"
fi

if [[ ! -x $venv/bin/python ]]; then
    python=${PYTHON:-python3}
    if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        # Debian's own python3 splits venv/ensurepip into python3-venv.
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-venv
    fi
    log "creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
fi

if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    log "python requirements up to date"
    exit 0
fi

log "installing ${req_files[*]}"
for f in "${req_files[@]}"; do
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$f"
done
echo "$want" >"$stamp"
log "python requirements installed"
