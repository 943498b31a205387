"""Operations: health checks, the footer status strip, the RQ dashboard, the
reconciler and retention commands, structured logs."""
from flask import Blueprint

bp = Blueprint("ops", __name__)

from . import routes  # noqa: E402,F401
from .cli import register_cli  # noqa: E402
from .dashboard import register_dashboard  # noqa: E402


def register_ops(app):
    app.register_blueprint(bp)
    register_dashboard(app)
    register_cli(app)
