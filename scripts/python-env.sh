#!/usr/bin/env bash
# Creates .venv and installs requirements.txt into it (with --dev, requirements-dev.txt
# too when it exists). Stamp files keep the hash of what was installed: when the
# requirement files have not changed, this does nothing.
#   usage: scripts/python-env.sh [--dev]
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dev=0
[[ ${1:-} == --dev ]] && dev=1

cd "$IB_REPO_ROOT"
venv=.venv
req_files=(requirements.txt)
if ((dev)) && [[ -f requirements-dev.txt ]]; then
    req_files+=(requirements-dev.txt)
fi
[[ -f requirements.txt ]] || die "requirements.txt not found in $IB_REPO_ROOT"

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

# One stamp per requirement file, holding the hash of what was last installed from it,
# so alternating scripts/run (runtime only) and scripts/test (--dev) installs nothing.
installed=0
for f in "${req_files[@]}"; do
    stamp=$venv/.installed-$f.sha256
    want=$(sha256sum "$f" | cut -d' ' -f1)
    [[ -f $stamp && $(cat "$stamp") == "$want" ]] && continue
    log "installing $f"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$f"
    echo "$want" >"$stamp"
    installed=1
done
((installed)) || log "python requirements up to date"

# The interface's catalogues: compiled here, so both README commands serve both languages.
bash "$(dirname "${BASH_SOURCE[0]}")/translations.sh" compile
