"""The API tokens page: the signed-in admin's own tokens, a new one (shown once), revoke."""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from . import bp
from .service import PREFIX_LENGTH, TokenInputError, find_token, issue_token, revoke_token, token_expired, tokens_of

# What the form offers; the API and the CLI take any number of days up to MAX_EXPIRY_DAYS.
EXPIRY_CHOICES = (("", _l("Never")), ("7", _l("7 days")), ("30", _l("30 days")), ("90", _l("90 days")), ("365", _l("1 year")))


def _render(status=200, **context):
    context.setdefault("form", {"name": "", "expires_in_days": "30"})
    context.setdefault("error", None)
    return render_template(
        "auth/tokens.html", tokens=tokens_of(current_user), expiry_choices=EXPIRY_CHOICES,
        expired=token_expired, **context,
    ), status


@bp.route("/tokens")
def tokens():
    return _render()


@bp.route("/tokens", methods=["POST"])
def create_token():
    form = {"name": request.form.get("name", ""), "expires_in_days": request.form.get("expires_in_days", "")}
    days = form["expires_in_days"].strip()
    try:
        # Not digits: handed on as typed, for check_token_input to name the problem.
        token = issue_token(current_user, form["name"], (int(days) if days.isdigit() else days) or None)
    except TokenInputError as exc:
        return _render(422, form=form, error=exc)
    # Rendered, not redirected: this answer is the one place the whole token appears.
    return _render(new_token=token, new_prefix=token[:PREFIX_LENGTH])


@bp.route("/tokens/<prefix>/revoke", methods=["POST"])
def revoke(prefix):
    row = find_token(prefix, current_user)
    if row is None:
        abort(404)
    revoke_token(row)
    flash(_("Revoked token %(prefix)s… (%(name)s); it no longer works.", prefix=row.prefix, name=row.name), "success")
    return redirect(url_for("auth.tokens"))
