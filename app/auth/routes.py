from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..extensions import db, login_manager
from ..models import User
from ..ui import local_target
from . import bp
from .service import authenticate


@login_manager.user_loader
def load_user(user_id):
    return db.session.get(User, int(user_id))


# Open without signing in: the login page, static files, and the probes of load balancers.
PUBLIC_ENDPOINTS = {"auth.login", "static", "ops.healthz", "ops.readyz"}


@bp.before_app_request
def require_login():
    """Every page needs a signed-in user; the API authenticates with its own tokens."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.blueprint == "api":
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("specs.index"))
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        user = authenticate(username, request.form.get("password", ""))
        if user:
            login_user(user)
            return redirect(local_target(request.args.get("next"), url_for("specs.index")))
        error = "Wrong username or password."
    return render_template("auth/login.html", error=error, username=username), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))
