"""The RQ dashboard at /ops/rq, for signed-in admins only.

rq_dashboard.blueprint is one module-level object: nothing is attached to it here
(a second create_app() in the same process would raise), the app guards it instead.
"""
import rq_dashboard
import rq_dashboard.web
from flask import request
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from rq.serializers import JSONSerializer

from ..extensions import login_manager

URL_PREFIX = "/ops/rq"
# The dashboard's own script sends this cookie back as X-CSRFToken on its POSTs
# (delete, requeue, empty), so they pass the app's CSRF check like every form.
CSRF_COOKIE = "_csrf_token"


def register_dashboard(app):
    for key in dir(rq_dashboard.default_settings):
        if key.startswith("RQ_DASHBOARD_"):
            app.config.setdefault(key, getattr(rq_dashboard.default_settings, key))
    app.config["RQ_DASHBOARD_REDIS_URL"] = app.config["REDIS_URL"]
    rq_dashboard.web.config.serializer = JSONSerializer  # the build queue's serializer
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)

    @app.before_request
    def dashboard_needs_admin():
        if request.blueprint == "rq_dashboard" and not current_user.is_authenticated:
            return login_manager.unauthorized()
        return None

    @app.after_request
    def dashboard_csrf_cookie(response):
        if request.blueprint == "rq_dashboard" and current_user.is_authenticated:
            response.set_cookie(
                CSRF_COOKIE,
                generate_csrf(),
                path=URL_PREFIX,
                samesite="Strict",
                secure=app.config["SESSION_COOKIE_SECURE"],
            )
        return response
