"""What the Audit page shows for a stored row, in the request's language.

Rows are recorded in English and stay so (the API and the filters use their action names);
the page translates at display time. English pages show each row exactly as stored; a
translated page puts a description before the action's name and translates the field
names, the masked values and the targets the services write in a fixed form.
"""
from __future__ import annotations

import re

from ..i18n.catalog import gettext, pgettext
from ..i18n.labels import N_, SPEC_FIELD_WORDS, shows_stored_values, translated_or
from . import (
    BUILD_ACTIVATED, BUILD_CANCELLED, BUILD_PINNED, BUILD_REBUILT, CHANGED, CREDENTIAL_CHANGED,
    CREDENTIAL_CREATED, CREDENTIAL_DELETED, SIGNIN_FAILED, SIGNIN_SUCCEEDED, SIGNIN_THROTTLED,
    SPEC_CREATED, SPEC_DELETED, SPEC_EDITED, TOKEN_CREATED, TOKEN_REVOKED, USER_CREATED,
    USER_DISABLED, USER_ENABLED, USER_PASSWORD_SET, bp,
)

ACTION_WORDS = {
    SPEC_CREATED: N_("spec added"),
    SPEC_EDITED: N_("spec edited"),
    SPEC_DELETED: N_("spec deleted"),
    BUILD_CANCELLED: N_("build cancelled"),
    BUILD_REBUILT: N_("rebuilt"),
    BUILD_ACTIVATED: N_("revision activated"),
    BUILD_PINNED: N_("versions pinned"),
    CREDENTIAL_CREATED: N_("registry credential added"),
    CREDENTIAL_CHANGED: N_("registry credential edited"),
    CREDENTIAL_DELETED: N_("registry credential deleted"),
    TOKEN_CREATED: N_("API token created"),
    TOKEN_REVOKED: N_("API token revoked"),
    SIGNIN_SUCCEEDED: N_("signed in"),
    SIGNIN_FAILED: N_("sign-in failed"),
    SIGNIN_THROTTLED: N_("sign-in refused: too many failed attempts"),
    USER_CREATED: N_("user added"),
    USER_DISABLED: N_("user disabled"),
    USER_ENABLED: N_("user enabled"),
    USER_PASSWORD_SET: N_("password set"),
}

# The fields of rows other than a spec's (a spec's own fields: SPEC_FIELD_WORDS).
FIELD_WORDS = {
    **SPEC_FIELD_WORDS,
    "registry": N_("Registry"),
    "username": N_("Username"),
    "password": N_("Password"),
    "expires_at": N_("Expires"),
    "status": N_("Status"),
    "pushed_images_deleted": N_("Pushed images deleted"),
}

# Values the services write in words of their own.
VALUE_WORDS = {
    CHANGED: N_("(changed)"),
    "set": N_("set"),
    "stopping": N_("stopping"),
}

BLANK_USER = N_("(blank)")


def _token_target(match) -> str:
    return gettext("%(token)s of %(user)s", token=match["token"], user=match["user"])


def _job_target(match) -> str:
    """``r3 (edited)``, ``r3 (pinned: <detail>)``, ``r3 (cancelled by an admin)``: why a job
    started or stopped; a trigger's free-text detail stays as stored."""
    words = {
        "created": pgettext("trigger", "created"),
        "edited": pgettext("trigger", "edited"),
        "rebuild": pgettext("trigger", "rebuild"),
        "pinned": pgettext("trigger", "pinned"),
        "activated": pgettext("trigger", "activated"),
        "base-changed": pgettext("trigger", "base-changed"),
        "parent-changed": pgettext("trigger", "parent-changed"),
        "unknown": pgettext("trigger", "unknown"),
        "cancelled by an admin": gettext("cancelled by an admin"),
    }
    why, detail = match["why"], match["detail"]
    superseded = re.fullmatch(r"superseded by r(\d+)", why)
    if superseded:
        reason = gettext("superseded by r%(revision)s", revision=superseded[1])
    elif why in words:
        reason = words[why]
    else:
        return match.string
    if detail is None:
        return gettext("r%(revision)s (%(reason)s)", revision=match["revision"], reason=reason)
    return gettext("r%(revision)s (%(reason)s: %(detail)s)", revision=match["revision"], reason=reason,
                   detail=detail)


# Targets the services write in a fixed form (app/auth/service.py, app/auth/routes.py,
# app/specs/service.py, app/builds/control.py); any other target is shown as stored.
TARGETS = (
    (re.compile(r"disabled user"), lambda match: gettext("disabled user")),
    (re.compile(r"retry in (?P<seconds>\d+) s"), lambda match: gettext("retry in %(seconds)s s", seconds=match["seconds"])),
    (re.compile(r"(?P<num>\d+) job\(s\)"), lambda match: gettext("%(num)s job(s)", num=match["num"])),
    (re.compile(r"(?P<token>\S+… \(.*\)) of (?P<user>[^ ]+)"), _token_target),
    (re.compile(r"r(?P<revision>\d+) \((?P<why>[a-z][a-z0-9 -]*?)(?:: (?P<detail>.*))?\)"), _job_target),
)


def action_label(action: str) -> str | None:
    """A description of the action for a translated page; None in English (the name says it)."""
    label = translated_or(action, ACTION_WORDS.get(action))
    return None if label == action else label


def field_label(field: str) -> str:
    return translated_or(field, FIELD_WORDS.get(field))


def value_label(value) -> str:
    """A stored value of a change; None (no value) as a dash."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return translated_or(value, VALUE_WORDS.get(value))
    return value


def actor_label(actor: str) -> str:
    return translated_or(actor, BLANK_USER if actor == BLANK_USER else None)


def target_label(target: str) -> str:
    if shows_stored_values():
        return target
    for pattern, translate in TARGETS:
        match = pattern.fullmatch(target)
        if match:
            return translate(match)
    return target


for _helper in (action_label, field_label, value_label, actor_label, target_label):
    bp.add_app_template_global(_helper, f"audit_{_helper.__name__}")
