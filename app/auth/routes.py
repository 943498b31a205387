from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from .. import audit
from ..extensions import db, login_manager
from ..models import User
from ..ops.logging import remember_username
from ..params import NoSuchRow
from ..ui import local_target
from . import bp
from .service import authenticate
from .throttle import record_failure, record_success, seconds_to_wait, wait_message


@login_manager.user_loader
def load_user(user_id):
    """The session's user, or None (signed out) once it has been disabled or removed."""
    try:
        user = db.session.get(User, int(user_id))
    except (ValueError, OverflowError):
        return None
    return user if user is not None and user.is_active else None


# Open without signing in: the login page, its language switcher, static files, and the
# probes of load balancers.
PUBLIC_ENDPOINTS = {"auth.login", "i18n.choose_language", "static", "ops.healthz", "ops.readyz"}


@bp.before_app_request
def require_login():
    """Every page needs a signed-in user; the API authenticates with its own tokens."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.blueprint == "api":
        return None
    if isinstance(request.routing_exception, NoSuchRow):
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    remember_username(current_user)  # loaded now, before any commit of the request expires it
    return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("specs.index"))
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        wait = seconds_to_wait("signin", username)
        if wait:
            audit.record(audit.SIGNIN_THROTTLED, user=username or "(blank)", target=f"retry in {wait} s")
            db.session.commit()
            page = render_template("auth/login.html", error=wait_message(wait), username=username)
            return page, 429, {"Retry-After": str(wait)}
        user = authenticate(username, request.form.get("password", ""))
        if user:
            record_success("signin", username)
            session.permanent = True  # lives SESSION_IDLE_MINUTES past the last request
            login_user(user)
            return redirect(local_target(request.args.get("next"), url_for("specs.index")))
        record_failure("signin", username)
        error = _("Wrong username or password.")
    return render_template("auth/login.html", error=error, username=username), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    flash(_("Signed out."), "info")
    return redirect(url_for("auth.login"))
