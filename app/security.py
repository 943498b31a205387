"""What every response carries for the browser's protection, and how long a session lasts.

A strict Content-Security-Policy: scripts and styles only from this site's own files
(no inline script, no style attribute, no eval), nothing may frame a page. The RQ
dashboard at /ops/rq is a third-party page built on inline scripts, underscore
templates (eval) and style attributes: its blueprint alone gets a policy that lets it
work, still same-origin only and never framed.

A signed-in session is permanent with a lifetime of SESSION_IDLE_MINUTES, renewed by
every request the user makes (Flask re-signs the cookie each time), so it ends after
that long idle; the signature's timestamp enforces it on the server too. The requests a
page makes on its own (a log's long poll, a row or the list refreshing itself) are not
the user: they renew nothing, so a job page left open does not keep a session alive,
and the busiest endpoint does not sign a cookie on every answer.
"""
from __future__ import annotations

from datetime import timedelta

from flask import request
from flask.sessions import SecureCookieSessionInterface

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DASHBOARD_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DASHBOARD_BLUEPRINT = "rq_dashboard"
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


# The endpoints pages ask on their own (hx-trigger "every ..." and the log's poller).
AUTOMATIC_ENDPOINTS = frozenset({"builds.job_log", "builds.job_row", "specs.row", "specs.stamp"})


class IdleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session; a page's own polls do not renew it."""

    def should_set_cookie(self, app, session) -> bool:
        if request.endpoint in AUTOMATIC_ENDPOINTS and not session.modified:
            return False
        return super().should_set_cookie(app, session)


def security_headers(response):
    dashboard = request.blueprint == DASHBOARD_BLUEPRINT
    response.headers["Content-Security-Policy"] = DASHBOARD_POLICY if dashboard else PAGE_POLICY
    for name, value in HEADERS.items():
        response.headers[name] = value
    return response


def register_security(app) -> None:
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    app.config["SESSION_REFRESH_EACH_REQUEST"] = True
    app.session_interface = IdleSessionInterface()
    app.after_request(security_headers)
