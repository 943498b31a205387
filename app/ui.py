"""What the server-rendered pages share: Jinja filters and the HTML error pages."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

from babel.dates import format_datetime
from flask import current_app, render_template, request
from flask_babel import get_locale, lazy_gettext as _l
from markupsafe import Markup, escape

from .i18n.catalog import gettext, ngettext
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

_UNITS = (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))
# An age in words, per unit: each a literal ngettext call, so that the catalogue has them all.
_AGO = {
    "year": lambda n: ngettext("%(num)d year ago", "%(num)d years ago", n),
    "month": lambda n: ngettext("%(num)d month ago", "%(num)d months ago", n),
    "day": lambda n: ngettext("%(num)d day ago", "%(num)d days ago", n),
    "hour": lambda n: ngettext("%(num)d hour ago", "%(num)d hours ago", n),
    "minute": lambda n: ngettext("%(num)d minute ago", "%(num)d minutes ago", n),
    "second": lambda n: ngettext("%(num)d second ago", "%(num)d seconds ago", n),
}
_IN = {
    "year": lambda n: ngettext("in %(num)d year", "in %(num)d years", n),
    "month": lambda n: ngettext("in %(num)d month", "in %(num)d months", n),
    "day": lambda n: ngettext("in %(num)d day", "in %(num)d days", n),
    "hour": lambda n: ngettext("in %(num)d hour", "in %(num)d hours", n),
    "minute": lambda n: ngettext("in %(num)d minute", "in %(num)d minutes", n),
    "second": lambda n: ngettext("in %(num)d second", "in %(num)d seconds", n),
}


def _as_utc(value: datetime) -> datetime:
    # The models store naive UTC datetimes.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def humanize_age(value: datetime, now: datetime | None = None) -> str:
    """'just now', '3 minutes ago', 'in 2 hours' (剛剛, 3 分鐘前, 2 小時後 on a Chinese page)."""
    now = _as_utc(now or datetime.now(timezone.utc))
    seconds = int((now - _as_utc(value)).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 10:
        return gettext("just now")
    if seconds < 60:
        amount, unit = seconds, "second"
    else:
        amount, unit = next((seconds // size, name) for name, size in _UNITS if seconds >= size)
    return (_IN if future else _AGO)[unit](amount)


def exact_utc(value: datetime | None) -> str:
    """The exact time in UTC, written the page's way: '2026-06-01 11:57:00 UTC' in English,
    '2026年6月1日 上午11:57:00 UTC' in Chinese (CLDR's medium format)."""
    if value is None:
        return ""
    locale = get_locale()
    if locale is None or locale.language == "en":
        return _as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{format_datetime(_as_utc(value), 'medium', tzinfo=timezone.utc, locale=locale)} UTC"


def relative_time(value: datetime | None, now: datetime | None = None) -> Markup:
    """A <time> element: the age in words, the exact UTC time on hover."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    iso = _as_utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso, exact_utc(value), humanize_age(value, now)
    )


def filesize(size: int | None) -> str:
    if size is None:
        return ""
    amount = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return ""


def local_target(target: str | None, default: str) -> str:
    """``target`` when it is a path on this site, else ``default``: a redirect to
    another site would hand the admin's session to it."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return default
    return target


def body_too_large(error: RequestEntityTooLarge) -> RequestEntityTooLarge:
    """The 413 with the limit in its words (werkzeug's own says only 'capacity limit')."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    error.description = gettext(
        "The request body is too large: at most %(size)s (%(limit)d bytes, MAX_CONTENT_LENGTH) is accepted.",
        size=filesize(limit), limit=limit,
    )
    return error


# werkzeug's own words for an error raised without a description of ours (a plain
# abort(404), a wrong method), so that they can be translated too.
WERKZEUG_DESCRIPTIONS = {
    400: _l("The browser (or proxy) sent a request that this server could not understand."),
    401: _l("The server could not verify that you are authorized to access the URL requested. You either supplied "
            "the wrong credentials (e.g. a bad password), or your browser doesn't understand how to supply the "
            "credentials required."),
    403: _l("You don't have the permission to access the requested resource. It is either read-protected or not "
            "readable by the server."),
    404: _l("The requested URL was not found on the server. If you entered the URL manually please check your "
            "spelling and try again."),
    405: _l("The method is not allowed for the requested URL."),
    409: _l("A conflict happened while processing the request. The resource might have been modified while the "
            "request was being processed."),
    413: _l("The data value transmitted exceeds the capacity limit."),
    415: _l("The server does not support the media type transmitted in the request."),
    422: _l("The request was well-formed but was unable to be followed due to semantic errors."),
    429: _l("This user has exceeded an allotted request count. Try again later."),
    500: _l("The server encountered an internal error and was unable to complete your request. Either the server "
            "is overloaded or there is an error in the application."),
    503: _l("The server is temporarily unable to service your request due to maintenance downtime or capacity "
            "problems. Please try again later."),
}


def error_description(error: HTTPException) -> str:
    """An error's description in the request's language: ours are translated where they
    are raised (or lazily, NoSuchRow), werkzeug's defaults come from WERKZEUG_DESCRIPTIONS."""
    if error.description == type(error).description and error.code in WERKZEUG_DESCRIPTIONS:
        return str(WERKZEUG_DESCRIPTIONS[error.code])
    return str(error.description)


def _api_error(error):
    from .api.errors import http_error  # app.api imports this module's helpers

    return http_error(error)


def unix_time(value: datetime) -> str:
    """A datetime as seconds since the epoch, for scripts that compute durations."""
    return f"{_as_utc(value).timestamp():.3f}"


def register_ui(app) -> None:
    app.add_template_filter(relative_time, "reltime")
    app.add_template_filter(exact_utc, "exact_utc")
    app.add_template_filter(filesize, "filesize")
    app.add_template_filter(unix_time, "unix_time")

    @app.errorhandler(404)
    def not_found(error):
        # The API answers in JSON from its own handlers; pages get a page.
        if request.blueprint == "api":
            return error
        if request.path.startswith("/api/"):
            return _api_error(error)  # a NoSuchRow id: matched no rule, so no blueprint
        if request.headers.get("HX-Request"):
            return escape(error_description(error)), 404
        return render_template("errors/404.html", error=error), 404

    @app.errorhandler(413)
    @app.errorhandler(422)
    def refused(error):
        """A body over MAX_CONTENT_LENGTH, a query parameter out of range (InvalidParameter):
        the reason, in JSON under /api/, as text for htmx, else on a page."""
        if isinstance(error, RequestEntityTooLarge):
            error = body_too_large(error)
        if request.path.startswith("/api/"):
            return _api_error(error)
        if request.headers.get("HX-Request"):
            return escape(error_description(error)), error.code
        return render_template("errors/refused.html", error=error), error.code
