"""The catalogue's pages: list, add, edit (Info and Jobs tabs), rebuild, delete.

Routes parse the form, call one service function and render; the same partials
serve the first render and the htmx requests (row polling, live validation).
"""
from flask import abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import defer

from ..extensions import db
from ..models import BuildJob, ImageSpec, RegistryCredential
from . import bp
from .service import (
    SpecNotDeleted,
    check_spec,
    create_spec,
    delete_spec,
    preview_containerfile,
    rebuild_spec,
    spec_rows,
    update_spec,
)
from .validation import PACKAGE_FIELDS, FieldError

JOBS_PER_PAGE = 25
# A page of the catalogue renders in a few milliseconds; all of a thousand specs would not.
SPECS_PER_PAGE = 50
FORM_FIELDS = ("name", "base_image") + PACKAGE_FIELDS


def _spec_or_404(name: str) -> ImageSpec:
    return db.session.scalar(select(ImageSpec).where(ImageSpec.name == name)) or abort(404)


def _form_values(form) -> dict:
    """What the admin typed, verbatim, to render the form again."""
    values = {field: form.get(field, "") for field in FORM_FIELDS}
    values["use_pull_secret"] = bool(form.get("use_pull_secret"))
    values["pull_secret"] = form.get("pull_secret", "")
    return values


def _spec_data(values: dict) -> dict:
    """The service's input: the pull secret only counts while its checkbox is on."""
    data = {field: values[field] for field in FORM_FIELDS}
    data["pull_secret"] = values["pull_secret"] if values["use_pull_secret"] else None
    return data


def _pull_secret_unchosen(values: dict) -> list[FieldError]:
    if values["use_pull_secret"] and not values["pull_secret"].strip():
        return [FieldError("pull_secret", "Choose a registry credential, or untick \"Use image pull secret\".")]
    return []


def _values_of(spec: ImageSpec) -> dict:
    values = {field: "\n".join(getattr(spec, field) or []) for field in PACKAGE_FIELDS}
    values.update(
        name=spec.name,
        base_image=spec.base_image,
        use_pull_secret=spec.pull_secret is not None,
        pull_secret=spec.pull_secret.name if spec.pull_secret else "",
    )
    return values


def _credentials():
    return db.session.scalars(select(RegistryCredential).order_by(RegistryCredential.name)).all()


def _render_form(template, values, errors, status=200, **context):
    preview, _ = preview_containerfile(_spec_data(values))
    return (
        render_template(
            template, form=values, errors=errors, preview=preview, credentials=_credentials(), **context
        ),
        status,
    )


def _save_form(values: dict, save, existing: ImageSpec | None = None):
    """(outcome, errors) of ``save`` (create_spec or update_spec), which does not run while
    the form itself is incomplete (the pull-secret box ticked but no credential chosen)."""
    data = _spec_data(values)
    unchosen = _pull_secret_unchosen(values)
    if unchosen:
        return None, check_spec(data, existing=existing).errors + unchosen
    outcome = save(data)
    return outcome, outcome.result.errors


def _job_started_message(prefix: str, job: BuildJob) -> Markup:
    link = url_for("builds.job", job_id=job.id)
    return Markup('{} Build job <a href="{}">r{}</a> is queued (tag <code>{}</code>).').format(
        prefix, link, job.revision, job.tag
    )


@bp.route("/")
def index():
    specs = db.paginate(select(ImageSpec).order_by(ImageSpec.name), per_page=SPECS_PER_PAGE, error_out=False)
    return render_template("specs/index.html", rows=spec_rows(specs.items), specs=specs)


@bp.route("/specs/<name>/row")
def row(name):
    spec = _spec_or_404(name)
    (row,) = spec_rows(select(ImageSpec).where(ImageSpec.id == spec.id))
    return render_template("specs/_row.html", row=row)


@bp.route("/specs/new", methods=["GET", "POST"])
def new():
    if request.method == "GET":
        return _render_form("specs/new.html", _form_values({}), [])
    values = _form_values(request.form)
    outcome, errors = _save_form(values, create_spec)
    if errors:
        return _render_form("specs/new.html", values, errors, 422)
    flash(_job_started_message(f"Saved {outcome.spec.name}.", outcome.job), "success")
    return redirect(url_for("specs.index"))


@bp.route("/specs/validate", methods=["POST"])
def validate():
    """Live feedback while typing: per-field errors and the Containerfile preview.

    A field left blank shows no error yet; the submit reports it.
    """
    existing = _spec_or_404(request.args["spec"]) if request.args.get("spec") else None
    values = _form_values(request.form)
    data = _spec_data(values)
    result = check_spec(data, existing=existing)
    preview, _ = preview_containerfile(data)
    errors = [e for e in result.errors if (data.get(e.field) or "").strip()] + _pull_secret_unchosen(values)
    return render_template("specs/_feedback.html", errors=errors, preview=preview)


@bp.route("/specs/<name>/edit", methods=["GET", "POST"])
def edit(name):
    spec = _spec_or_404(name)
    tab = "jobs" if request.args.get("tab") == "jobs" else "info"
    if request.method == "GET" and tab == "jobs":
        jobs = db.paginate(
            select(BuildJob)
            .options(defer(BuildJob.spec_snapshot))
            .where(BuildJob.spec_id == spec.id)
            .order_by(BuildJob.revision.desc()),
            per_page=JOBS_PER_PAGE,
            error_out=False,
        )
        return render_template("specs/edit.html", jobs=jobs, spec=spec, tab=tab, job_count=jobs.total)
    job_count = db.session.scalar(select(func.count(BuildJob.id)).where(BuildJob.spec_id == spec.id))
    context = {"spec": spec, "tab": tab, "job_count": job_count}
    if request.method == "GET":
        return _render_form("specs/edit.html", _values_of(spec), [], **context)

    values = _form_values(request.form) | {"name": spec.name}
    outcome, errors = _save_form(values, lambda data: update_spec(spec, data), existing=spec)
    if errors:
        return _render_form("specs/edit.html", values, errors, 422, **context)
    if outcome.job is None:
        flash("No changes; no new build started.", "info")
    else:
        flash(_job_started_message("Saved.", outcome.job), "success")
    return redirect(url_for("specs.edit", name=spec.name))


@bp.route("/specs/<name>/rebuild", methods=["POST"])
def rebuild(name):
    spec = _spec_or_404(name)
    job = rebuild_spec(spec)
    flash(_job_started_message(f"Rebuilding {spec.name}.", job), "success")
    tab = "jobs" if request.form.get("tab") == "jobs" else None
    return redirect(url_for("specs.edit", name=spec.name, tab=tab))


@bp.route("/specs/<name>/delete", methods=["POST"])
def delete(name):
    spec = _spec_or_404(name)
    delete_images = bool(request.form.get("delete_pushed_images"))
    try:
        outcome = delete_spec(spec, delete_pushed_images=delete_images)
    except SpecNotDeleted as exc:
        flash(Markup("{}{}").format(exc, _error_list(exc.errors)), "error")
        return redirect(url_for("specs.index"))
    if delete_images:
        pushed = f" Its pushed images were deleted from the registry ({len(outcome.pushed_tags_deleted)} tag(s))."
    else:
        pushed = " Its pushed images stay in the registry."
    flash(f"Deleted {name} with its build jobs and logs.{pushed}", "success")
    for warning in outcome.warnings:
        flash(warning, "warning")
    return redirect(url_for("specs.index"))


def _error_list(errors: list[str]) -> Markup:
    if not errors:
        return Markup("")
    return Markup("<ul>{}</ul>").format(Markup("").join(Markup("<li>{}</li>").format(e) for e in errors))
