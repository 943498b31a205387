"""What every response carries for the browser's protection, and how long a session lasts.

A strict Content-Security-Policy: scripts and styles only from this site's own files
(no inline script, no style attribute, no eval), nothing may frame a page. The RQ
dashboard at /ops/rq is a third-party page built on inline scripts, underscore
templates (eval) and style attributes: its blueprint alone gets a policy that lets it
work, still same-origin only and never framed.

A signed-in session is permanent with a lifetime of SESSION_IDLE_MINUTES, renewed by
every request (Flask re-signs the cookie each time), so it ends after that long idle;
the signature's timestamp enforces it on the server too.
"""
from __future__ import annotations

from datetime import timedelta

from flask import request

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


def security_headers(response):
    dashboard = request.blueprint == DASHBOARD_BLUEPRINT
    response.headers["Content-Security-Policy"] = DASHBOARD_POLICY if dashboard else PAGE_POLICY
    for name, value in HEADERS.items():
        response.headers[name] = value
    return response


def register_security(app) -> None:
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    app.config["SESSION_REFRESH_EACH_REQUEST"] = True
    app.after_request(security_headers)
