"""What the server-rendered pages share: Jinja filters and the HTML error pages."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import render_template, request
from markupsafe import Markup, escape

_UNITS = (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


def _as_utc(value: datetime) -> datetime:
    # The models store naive UTC datetimes.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def humanize_age(value: datetime, now: datetime | None = None) -> str:
    """'just now', '3 minutes ago', 'in 2 hours'."""
    now = _as_utc(now or datetime.now(timezone.utc))
    seconds = int((now - _as_utc(value)).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 10:
        return "just now"
    if seconds < 60:
        amount, unit = seconds, "second"
    else:
        amount, unit = next((seconds // size, name) for name, size in _UNITS if seconds >= size)
    words = f"{amount} {unit}{'' if amount == 1 else 's'}"
    return f"in {words}" if future else f"{words} ago"


def exact_utc(value: datetime | None) -> str:
    if value is None:
        return ""
    return _as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


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


def register_ui(app) -> None:
    app.add_template_filter(relative_time, "reltime")
    app.add_template_filter(exact_utc, "exact_utc")
    app.add_template_filter(filesize, "filesize")

    @app.errorhandler(404)
    def not_found(error):
        # The API answers in JSON from its own handlers; pages get a page.
        if request.blueprint == "api" or request.path.startswith("/api/"):
            return error
        if request.headers.get("HX-Request"):
            return escape(error.description), 404
        return render_template("errors/404.html", error=error), 404
