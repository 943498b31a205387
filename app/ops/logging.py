"""Structured logs: one `key=value` line per request and per job event.

Web:    ts=... level=INFO logger=app.request method=GET path=/ status=200 duration_ms=3.1 user=admin
Worker: ts=... level=INFO logger=app.builds.runner job=42 event=started worker=host:123
Values with spaces or quotes are quoted, so a line splits on spaces unambiguously.
"""
from __future__ import annotations

import logging
import time

from flask import g, has_request_context, request
from sqlalchemy import inspect as sa_inspect

request_log = logging.getLogger("app.request")

_HANDLER_MARK = "_imagebuilder_handler"


def kv(value) -> str:
    """One value of a key=value line: bare when it can be, quoted otherwise."""
    text = "-" if value is None or value == "" else str(value)
    if any(c in text for c in ' "=\n\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record):
        line = (
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} level={record.levelname} "
            f"logger={record.name} {record.getMessage()}"
        )
        if record.exc_info:
            line += " exc=" + kv(self.formatException(record.exc_info))
        return line


class JobLogger(logging.LoggerAdapter):
    """Prefixes each message with `job=<id>`: `job_logger(7).info("event=pushed image=%s", ref)`."""

    def process(self, msg, kwargs):
        return f"job={self.extra['job_id']} {msg}", kwargs


def job_logger(job_id: int, name: str = "app.builds") -> JobLogger:
    return JobLogger(logging.getLogger(name), {"job_id": job_id})


def configure_logging(app=None, level=logging.INFO) -> None:
    """Key=value lines on stderr for the whole process; with an app, one line per request.

    Safe to call more than once (tests build many apps): one handler is ever added.
    """
    root = logging.getLogger()
    if not any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(KeyValueFormatter())
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    if app is not None:
        # First of all before-request hooks, so a request the login guard answers is timed too.
        app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
        app.after_request(_log_request)


def remember_username(user) -> None:
    """Note who makes this request, for its log line; called where the user is loaded."""
    if has_request_context():
        g.request_username = user.username


def _username() -> str | None:
    """Who made the request, never at the cost of a query: the name remembered (every API
    request and signed-in page), else on a public page the name of a user the request
    loaded, while it is still loaded. Reading ``user.username`` instead would reload a row
    that a commit of the request has expired."""
    name = g.get("request_username")
    if name is not None:
        return name
    user = g.get("_login_user")
    state = sa_inspect(user, raiseerr=False) if user is not None else None
    return state.dict.get("username") if state is not None else None


def _start_timer():
    g.request_started = time.perf_counter()


def _log_request(response):
    started = g.get("request_started")
    duration = (time.perf_counter() - started) * 1000 if started else 0.0
    request_log.info(
        "method=%s path=%s status=%s duration_ms=%.1f user=%s",
        request.method,
        kv(request.path),
        response.status_code,
        duration,
        kv(_username()),
    )
    return response
