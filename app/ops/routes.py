from flask import jsonify, render_template

from . import bp
from .checks import build_status, readiness


@bp.route("/healthz")
def healthz():
    """The process is up. Touches nothing else, so it stays cheap for probes."""
    return "ok", 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.route("/readyz")
def readyz():
    parts = readiness()
    failing = {name: error for name, error in parts.items() if error}
    body = {"status": "unavailable" if failing else "ok", "failing": failing, "checked": sorted(parts)}
    return jsonify(body), (503 if failing else 200)


@bp.route("/ops/status")
def status():
    return render_template("ops/_status.html", status=build_status())
