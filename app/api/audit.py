"""The audit trail over the API: newest first, filtered, one bounded page at a time."""
from flask import jsonify, request
from flask_babel import gettext as _
from sqlalchemy import func, select

from ..audit import ACTIONS
from ..audit.queries import MAX_PAGE, AuditFilter, events_query, has_control_characters, parse_since
from ..extensions import db
from ..params import query_int
from ..specs.validation import FieldError
from . import bp
from .errors import InvalidInput
from .serializers import audit_json

MAX_PER_PAGE = 100
MAX_FILTER_CHARS = 255


@bp.get("/audit")
def list_audit():
    page = query_int("page", 1, minimum=1)
    per_page = query_int("per_page", 50, minimum=1, maximum=MAX_PER_PAGE, clamp=True)
    if page > MAX_PAGE:
        raise InvalidInput([FieldError("page", _("Must be at most %(maximum)d.", maximum=MAX_PAGE))])
    filters = _filters()
    query = events_query(filters)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    events = db.session.scalars(query.limit(per_page).offset((page - 1) * per_page))
    return jsonify(
        events=[audit_json(event) for event in events],
        page=page,
        per_page=per_page,
        total=total,
        pages=(total + per_page - 1) // per_page,
    )


def _filters() -> AuditFilter:
    errors = []
    values = {}
    for key in ("spec", "user", "action", "since"):
        raw = request.args.get(key, "")
        if len(raw) > MAX_FILTER_CHARS:
            errors.append(FieldError(key, _("At most %(limit)d characters.", limit=MAX_FILTER_CHARS)))
        elif has_control_characters(raw):
            errors.append(FieldError(key, _("No control characters.")))
        values[key] = raw.strip() or None
    if values["action"] and values["action"] not in ACTIONS:
        errors.append(FieldError("action", _("One of %(choices)s.", choices=", ".join(ACTIONS))))
    since = None
    if values["since"] and not errors:
        try:
            since = parse_since(values["since"])
        except ValueError as exc:
            errors.append(FieldError("since", str(exc)))
    if errors:
        raise InvalidInput(errors)
    return AuditFilter(spec=values["spec"], user=values["user"], action=values["action"], since=since)
