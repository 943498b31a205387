"""Reading the trail: one filtered, newest-first query shared by the page and the API."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from flask_babel import gettext as _
from sqlalchemy import Select, select

from ..extensions import db
from ..models import AuditEvent

# Pages past this would ask the database for an offset beyond its integers; no trail is that long.
MAX_PAGE = 1_000_000
# The earliest and latest `since` that both databases store (DateTime columns).
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(9999, 12, 31)


@dataclass(frozen=True)
class AuditFilter:
    spec: str | None = None
    user: str | None = None
    action: str | None = None
    since: datetime | None = None  # naive UTC


def events_query(filters: AuditFilter) -> Select:
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if filters.spec:
        query = query.where(AuditEvent.spec == filters.spec)
    if filters.user:
        query = query.where(AuditEvent.actor == filters.user)
    if filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.since:
        query = query.where(AuditEvent.created_at >= filters.since)
    return query


def has_control_characters(text: str) -> bool:
    """PostgreSQL refuses a NUL in a text parameter; no name or date holds any control character."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def page_number(raw: str | None) -> int:
    """A page asked for in a URL, as a page that exists in the pager's range (1 if not a number)."""
    try:
        page = int(raw or 1)
    except ValueError:
        return 1
    return min(max(page, 1), MAX_PAGE)


def parse_since(raw: str) -> datetime:
    """An ISO-8601 date or date-time (a zone is converted to UTC); ValueError with the
    reason otherwise."""
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise ValueError(_("Must be an ISO-8601 date or date-time, e.g. 2026-12-01 or 2026-12-01T10:00:00Z.")) from None
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(_("Must be between 1970-01-01 and 9999-12-31."))
    return moment


def user_names() -> list[str]:
    """Who appears in the trail, for the page's filter."""
    return list(db.session.scalars(select(AuditEvent.actor).distinct().order_by(AuditEvent.actor)))
