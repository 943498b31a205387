"""Registry credential pages. A stored password is never rendered, not even into a form."""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from ..extensions import db
from ..models import ImageSpec, RegistryCredential
from . import bp
from .service import CredentialInUse, create_credential, delete_credential, update_credential

FIELDS = ("name", "registry", "username")


def _credential_or_404(name: str) -> RegistryCredential:
    return db.session.scalar(select(RegistryCredential).where(RegistryCredential.name == name)) or abort(404)


def _typed(form) -> dict:
    """What was typed, minus the password, to render the form again."""
    return {field: form.get(field, "") for field in FIELDS}


@bp.route("/")
def index():
    credentials = db.session.scalars(select(RegistryCredential).order_by(RegistryCredential.name)).all()
    used_by = dict(
        db.session.execute(
            select(ImageSpec.pull_secret_id, func.count(ImageSpec.id))
            .where(ImageSpec.pull_secret_id.is_not(None))
            .group_by(ImageSpec.pull_secret_id)
        ).all()
    )
    return render_template("credentials/index.html", credentials=credentials, used_by=used_by)


@bp.route("/new", methods=["GET", "POST"])
def new():
    if request.method == "GET":
        return render_template("credentials/form.html", form=dict.fromkeys(FIELDS, ""), errors=[], credential=None)
    _credential, errors = create_credential(request.form.to_dict())
    if errors:
        form = _typed(request.form)
        return render_template("credentials/form.html", form=form, errors=errors, credential=None), 422
    flash(_("Saved registry credential %(name)s.", name=request.form["name"].strip()), "success")
    return redirect(url_for("credentials.index"))


@bp.route("/<name>/edit", methods=["GET", "POST"])
def edit(name):
    credential = _credential_or_404(name)
    if request.method == "GET":
        form = {"name": credential.name, "registry": credential.registry_host, "username": credential.username}
        return render_template("credentials/form.html", form=form, errors=[], credential=credential)
    errors = update_credential(credential, request.form.to_dict())
    if errors:
        form = _typed(request.form) | {"name": credential.name}
        return render_template("credentials/form.html", form=form, errors=errors, credential=credential), 422
    flash(_("Saved registry credential %(name)s.", name=credential.name), "success")
    return redirect(url_for("credentials.index"))


@bp.route("/<name>/delete", methods=["POST"])
def delete(name):
    credential = _credential_or_404(name)
    try:
        delete_credential(credential)
    except CredentialInUse as exc:
        flash(_("Not deleted: %(reason)s", reason=exc), "error")
    else:
        flash(_("Deleted registry credential %(name)s.", name=name), "success")
    return redirect(url_for("credentials.index"))
