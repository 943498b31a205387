"""The JSON API for automation, at /api/v1. Callers authenticate with a Bearer token,
so the blueprint is exempt from the pages' CSRF protection (browsers never attach that
header on their own)."""
from flask import Blueprint

from ..extensions import csrf

bp = Blueprint("api", __name__)
csrf.exempt(bp)

from . import activate, audit, auth, errors, logs, revisions, routes, tokens, watch  # noqa: E402,F401
