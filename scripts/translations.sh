#!/usr/bin/env bash
# The interface's message catalogues (app/translations; see app/i18n).
#   bash scripts/translations.sh compile   # .po -> .mo (the set-up runs this; .mo are not committed)
#   bash scripts/translations.sh update    # extract the message ids of app/ and templates/ and merge
#                                          # them into each catalogue (new ids come in untranslated)
#   bash scripts/translations.sh check     # every id translated, none fuzzy (tests/test_translations.py)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$IB_REPO_ROOT"
pybabel=.venv/bin/pybabel
dir=app/translations

case ${1:-} in
compile)
    "$pybabel" compile --statistics -d "$dir" 2>&1 | sed 's/^/[translations] /' >&2
    ;;
update)
    pot=$(mktemp --suffix=.pot)
    trap 'rm -f "$pot"' EXIT
    "$pybabel" --quiet extract -F babel.cfg -k lazy_gettext -k _l --no-location --sort-output \
        -o "$pot" .
    "$pybabel" --quiet update -N --no-wrap -i "$pot" -d "$dir" -l zh_Hant --ignore-obsolete
    log "updated $dir (untranslated ids: bash scripts/translations.sh check)"
    ;;
check)
    .venv/bin/python -m pytest -q tests/test_translations.py
    ;;
*)
    die "usage: scripts/translations.sh compile|update|check"
    ;;
esac
