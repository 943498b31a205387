"""The audit trail: every state change is one ``AuditEvent`` row.

Services call ``record(action, ...)`` next to the change they make, before their own
commit, so the row is written with the change or not at all. Who did it comes from the
request (the signed-in user or the API token's user) unless the caller says; outside a
request it is ``system``. Changes are kept in brief, ``{field: [old, new]}``, and a
secret field (a password, a token) only ever as ``"(changed)"``.

This package owns the rows: ``record`` and the action names here, the queries
(``queries``), the Audit page (``routes``), the API (``app/api/audit.py``), the rows for
changes announced by signal (``signals``: a new active revision), and their pruning
after AUDIT_RETENTION_DAYS (``app/ops/retention.py`` calls ``prune``).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, g, has_request_context, request
from flask_login import current_user
from sqlalchemy import delete, select

from ..extensions import db
from ..models import AuditEvent, User, utcnow

bp = Blueprint("audit", __name__)

SYSTEM = "system"

SPEC_CREATED = "spec.created"
SPEC_EDITED = "spec.edited"
SPEC_DELETED = "spec.deleted"
BUILD_CANCELLED = "build.cancelled"
BUILD_REBUILT = "build.rebuilt"
BUILD_ACTIVATED = "build.activated"
BUILD_PINNED = "build.pinned"
CREDENTIAL_CREATED = "credential.created"
CREDENTIAL_CHANGED = "credential.changed"
CREDENTIAL_DELETED = "credential.deleted"
TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
SIGNIN_SUCCEEDED = "signin.succeeded"
SIGNIN_FAILED = "signin.failed"
SIGNIN_THROTTLED = "signin.throttled"
USER_CREATED = "user.created"
USER_DISABLED = "user.disabled"
USER_ENABLED = "user.enabled"
USER_PASSWORD_SET = "user.password-set"

ACTIONS = (
    SPEC_CREATED, SPEC_EDITED, SPEC_DELETED,
    BUILD_CANCELLED, BUILD_REBUILT, BUILD_ACTIVATED, BUILD_PINNED,
    CREDENTIAL_CREATED, CREDENTIAL_CHANGED, CREDENTIAL_DELETED,
    TOKEN_CREATED, TOKEN_REVOKED,
    SIGNIN_SUCCEEDED, SIGNIN_FAILED, SIGNIN_THROTTLED,
    USER_CREATED, USER_DISABLED, USER_ENABLED, USER_PASSWORD_SET,
)

# Field names whose values are never kept, only that they changed.
SECRET_FIELDS = ("password", "token", "secret")
CHANGED = "(changed)"
# A value is kept in brief: long package lists and texts are cut.
MAX_VALUE_CHARS = 500


def record(action: str, *, spec=None, target: str | None = None, changes: dict | None = None,
           user=None) -> AuditEvent:
    """Add one audit row to the session (the caller's commit writes it).

    ``spec``: an ImageSpec or a spec name; ``user``: a User, a user name, or None for
    the request's user (``system`` outside a request); ``changes``: {field: (old, new)}."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    event = AuditEvent(
        action=action,
        actor=_actor(user)[:80],
        address=request.remote_addr[:64] if has_request_context() and request.remote_addr else None,
        spec=(getattr(spec, "name", spec) or None),
        target=target[:255] if target else None,
        changes=brief_changes(changes) if changes else None,
    )
    db.session.add(event)
    return event


def brief_changes(changes: dict) -> dict:
    """{field: [old, new]} with secrets masked and long values cut."""
    return {
        str(field): [CHANGED, CHANGED] if _is_secret(field) else [_brief(old), _brief(new)]
        for field, (old, new) in changes.items()
    }


def diff(old: dict, new: dict) -> dict:
    """The fields whose value differs, as {field: (old, new)}, in ``new``'s order."""
    return {key: (old.get(key), value) for key, value in new.items() if old.get(key) != value}


def prune(days: int, now: datetime | None = None) -> int:
    """Delete the rows older than ``days``; how many went. Commits."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    deleted = db.session.execute(delete(AuditEvent).where(AuditEvent.created_at < cutoff)).rowcount
    db.session.commit()
    return deleted


def _is_secret(field) -> bool:
    return any(word in str(field).lower() for word in SECRET_FIELDS)


def _brief(value):
    if isinstance(value, (list, tuple)):
        value = "\n".join(str(item) for item in value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _actor(user) -> str:
    if isinstance(user, User):
        return user.username
    if isinstance(user, str) and user:
        return user
    if has_request_context():
        api_user = g.get("api_user")
        if api_user is not None:
            return api_user.username
        if current_user and current_user.is_authenticated:
            return current_user.username
    return SYSTEM


from . import labels, routes, signals  # noqa: E402,F401
