"""The Audit page: the whole trail, newest first, filtered by spec, user, action and since."""
from flask import render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..extensions import db
from . import ACTIONS, bp
from .queries import AuditFilter, events_query, has_control_characters, page_number, parse_since, user_names

EVENTS_PER_PAGE = 50
MAX_FILTER_CHARS = 128
# The filters' names in an error, as the form labels them.
FILTER_LABELS = {"spec": _l("Spec"), "user": _l("User"), "action": _l("Action"), "since": _l("Since")}


@bp.route("/audit")
def index():
    typed = {key: request.args.get(key, "").strip()[:MAX_FILTER_CHARS] for key in ("spec", "user", "action", "since")}
    error = None
    since = None
    for key, value in typed.items():
        if has_control_characters(value):
            typed[key] = ""
            error = _("%(field)s: no control characters.", field=FILTER_LABELS[key])
    if typed["since"]:
        try:
            since = parse_since(typed["since"])
        except ValueError as exc:
            error = _("Since: %(reason)s", reason=exc)
    action = typed["action"] if typed["action"] in ACTIONS else None
    filters = AuditFilter(spec=typed["spec"] or None, user=typed["user"] or None, action=action, since=since)
    events = db.paginate(events_query(filters), page=page_number(request.args.get("page")),
                         per_page=EVENTS_PER_PAGE, max_per_page=EVENTS_PER_PAGE, error_out=False)
    params = {key: value for key, value in typed.items() if value}
    return render_template(
        "audit/index.html", events=events, typed=typed, params=params, error=error,
        actions=ACTIONS, users=user_names(),
    ), (422 if error else 200)
