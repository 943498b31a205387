"""The catalogue's pages: list, add, edit (Info, Jobs and History tabs), rebuild, delete.

Routes parse the form, call one service function and render; the same partials
serve the first render and the htmx requests (row polling, live validation).
"""
from types import SimpleNamespace

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import defer

from ..audit.queries import AuditFilter, events_query, page_number
from ..auth.service import acting_username
from ..extensions import db
from ..i18n import catalog
from ..i18n.stored import display as stored_text
from ..models import MAX_INTEGER, BasePolicy, BuildJob, ImageSpec, RegistryCredential, Trigger
from ..params import query_int
from ..revisions.active import ActivationRefused, UnknownRevision, activate_revision
from ..ui import local_target
from ..watch.lineage import spec_lineage
from . import bp
from .service import (
    JobTrigger,
    SpecNotDeleted,
    check_spec,
    create_spec,
    delete_spec,
    list_stamp,
    preview_containerfile,
    rebuild_spec,
    spec_rows,
    update_spec,
)
from .validation import PACKAGE_FIELDS, FieldError

JOBS_PER_PAGE = 25
HISTORY_PER_PAGE = 50
# A page of the catalogue renders in a few milliseconds; all of a thousand specs would not.
SPECS_PER_PAGE = 50
FORM_FIELDS = ("name", "base_image") + PACKAGE_FIELDS + ("test_command",)


def _spec_or_404(name: str) -> ImageSpec:
    return db.session.scalar(select(ImageSpec).where(ImageSpec.name == name)) or abort(404)


def _form_values(form) -> dict:
    """What the admin typed, verbatim, to render the form again."""
    values = {field: form.get(field, "") for field in FORM_FIELDS}
    values["use_pull_secret"] = bool(form.get("use_pull_secret"))
    values["pull_secret"] = form.get("pull_secret", "")
    values["auto_activate"] = bool(form.get("auto_activate"))
    values["base_policy"] = form.get("base_policy") or BasePolicy.REBUILD
    return values


def _spec_data(values: dict) -> dict:
    """The service's input: the pull secret only counts while its checkbox is on."""
    data = {field: values[field] for field in FORM_FIELDS}
    data["pull_secret"] = values["pull_secret"] if values["use_pull_secret"] else None
    data["auto_activate"] = values["auto_activate"]
    data["base_policy"] = values["base_policy"]
    return data


def _pull_secret_unchosen(values: dict) -> list[FieldError]:
    if values["use_pull_secret"] and not values["pull_secret"].strip():
        return [FieldError("pull_secret", _("Choose a registry credential, or untick \"Use image pull secret\"."))]
    return []


def _values_of(spec: ImageSpec) -> dict:
    values = {field: "\n".join(getattr(spec, field) or []) for field in PACKAGE_FIELDS}
    values.update(
        name=spec.name,
        base_image=spec.base_image,
        use_pull_secret=spec.pull_secret is not None,
        pull_secret=spec.pull_secret.name if spec.pull_secret else "",
        test_command=spec.test_command or "",
        auto_activate=spec.auto_activate,
        base_policy=spec.base_policy,
    )
    return values


def _credentials():
    return db.session.scalars(select(RegistryCredential).order_by(RegistryCredential.name)).all()


def _spec_bases(editing: ImageSpec | None) -> list[str]:
    """The other specs' ``latest`` images, offered as base images."""
    names = db.session.scalars(select(ImageSpec.name).order_by(ImageSpec.name)).all()
    registry = current_app.config["REGISTRY"]
    return [f"{registry}/{name}:latest" for name in names if editing is None or name != editing.name]


def _render_form(template, values, errors, status=200, **context):
    preview, _result = preview_containerfile(_spec_data(values))
    return (
        render_template(
            template, form=values, errors=errors, preview=preview, credentials=_credentials(),
            spec_bases=_spec_bases(context.get("spec")), base_policies=BasePolicy.ALL, **context
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


def _trigger(kind: str) -> JobTrigger:
    return JobTrigger(kind, acting_username())


def _job_started_message(prefix: str, job: BuildJob) -> Markup:
    # Markup's % escapes each value (gettext's own would not).
    message = Markup(_('%(prefix)s Build job <a href="%(link)s">r%(revision)d</a> is queued (tag <code>%(tag)s</code>).'))
    return message % {"prefix": prefix, "link": url_for("builds.job", job_id=job.id), "revision": job.revision,
                      "tag": job.tag}


def row_words() -> SimpleNamespace:
    """What every spec row repeats, translated and built once a page (specs/_rows.html):
    a list of 50 rows would otherwise make hundreds of gettext calls. (A namespace, not a
    dict: in Jinja ``words.copy`` would be the dict's method.)"""
    return SimpleNamespace(
        name=catalog.gettext("Name"), status=catalog.gettext("Status"), image=catalog.gettext("Image"),
        updated=catalog.gettext("Updated"), edit=catalog.gettext("Edit"), spec=catalog.gettext("spec"),
        delete=catalog.gettext("Delete"), active=catalog.gettext("The active revision"),
        no_image=catalog.gettext("no image yet"), copy=catalog.gettext("Copy"),
        copy_title=catalog.gettext("Copy to the clipboard"), list_url=url_for("specs.index"),
    )


@bp.route("/")
def index():
    specs = db.paginate(
        select(ImageSpec).order_by(ImageSpec.name), page=query_int("page", 1, minimum=1), per_page=SPECS_PER_PAGE,
        error_out=False,
    )
    return render_template("specs/index.html", rows=spec_rows(specs.items), specs=specs, stamp=list_stamp(),
                           words=row_words())


@bp.route("/specs/stamp")
def stamp():
    """The open list's one cheap check: 204 while nothing was added or removed, else an
    answer that makes htmx reload the page (a job started elsewhere shows up)."""
    if request.args.get("v", "") == list_stamp():
        return "", 204
    return "", 200, {"HX-Refresh": "true"}


@bp.route("/specs/<name>/row")
def row(name):
    spec = _spec_or_404(name)
    (row,) = spec_rows(select(ImageSpec).where(ImageSpec.id == spec.id))
    return render_template("specs/_row.html", row=row, words=row_words())


@bp.route("/specs/new", methods=["GET", "POST"])
def new():
    if request.method == "GET":
        return _render_form("specs/new.html", _form_values({}) | {"auto_activate": True}, [])
    values = _form_values(request.form)
    outcome, errors = _save_form(values, lambda data: create_spec(data, _trigger(Trigger.CREATED)))
    if errors:
        return _render_form("specs/new.html", values, errors, 422)
    flash(_job_started_message(_("Saved %(name)s.", name=outcome.spec.name), outcome.job), "success")
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
    preview, _result = preview_containerfile(data)
    errors = [e for e in result.errors if (data.get(e.field) or "").strip()] + _pull_secret_unchosen(values)
    return render_template("specs/_feedback.html", errors=errors, preview=preview)


@bp.route("/specs/<name>/edit", methods=["GET", "POST"])
def edit(name):
    spec = _spec_or_404(name)
    tab = request.args.get("tab") if request.args.get("tab") in ("jobs", "history") else "info"
    if request.method == "GET" and tab == "history":
        events = db.paginate(events_query(AuditFilter(spec=spec.name)), page=page_number(request.args.get("page")),
                             per_page=HISTORY_PER_PAGE,
                             max_per_page=HISTORY_PER_PAGE, error_out=False)
        job_count = db.session.scalar(select(func.count(BuildJob.id)).where(BuildJob.spec_id == spec.id))
        return render_template("specs/edit.html", events=events, spec=spec, tab=tab, job_count=job_count,
                               lineage=spec_lineage(spec))
    if request.method == "GET" and tab == "jobs":
        jobs = db.paginate(
            select(BuildJob)
            .options(defer(BuildJob.spec_snapshot))
            .where(BuildJob.spec_id == spec.id)
            .order_by(BuildJob.revision.desc()),
            page=query_int("page", 1, minimum=1),
            per_page=JOBS_PER_PAGE,
            error_out=False,
        )
        return render_template("specs/edit.html", jobs=jobs, spec=spec, tab=tab, job_count=jobs.total,
                               lineage=spec_lineage(spec))
    job_count = db.session.scalar(select(func.count(BuildJob.id)).where(BuildJob.spec_id == spec.id))
    context = {"spec": spec, "tab": tab, "job_count": job_count, "lineage": spec_lineage(spec)}
    if request.method == "GET":
        return _render_form("specs/edit.html", _values_of(spec), [], **context)

    values = _form_values(request.form) | {"name": spec.name}
    settings = (spec.auto_activate, spec.base_policy)
    outcome, errors = _save_form(values, lambda data: update_spec(spec, data, _trigger(Trigger.EDITED)),
                                 existing=spec)
    if errors:
        return _render_form("specs/edit.html", values, errors, 422, **context)
    if outcome.job is None and (spec.auto_activate, spec.base_policy) != settings:
        flash(_("Saved; the build inputs did not change, so no new build started."), "success")
    elif outcome.job is None:
        flash(_("No changes; no new build started."), "info")
    else:
        flash(_job_started_message(_("Saved."), outcome.job), "success")
    return redirect(url_for("specs.edit", name=spec.name))


@bp.route("/specs/<name>/rebuild", methods=["POST"])
def rebuild(name):
    spec = _spec_or_404(name)
    job = rebuild_spec(spec, _trigger(Trigger.REBUILD))
    flash(_job_started_message(_("Rebuilding %(name)s.", name=spec.name), job), "success")
    tab = "jobs" if request.form.get("tab") == "jobs" else None
    return redirect(url_for("specs.edit", name=spec.name, tab=tab))


@bp.route("/specs/<name>/activate", methods=["POST"])
def activate(name):
    """Activate (or roll back to) a succeeded revision; back to the page it was pressed on."""
    spec = _spec_or_404(name)
    back = local_target(request.form.get("next"), url_for("specs.edit", name=spec.name, tab="jobs"))
    revision = request.form.get("revision", type=int)
    if revision is None or not 1 <= revision <= MAX_INTEGER:
        abort(404)
    try:
        job = activate_revision(spec, revision)
    except UnknownRevision:
        abort(404)
    except ActivationRefused as exc:
        flash(_("%(name)s r%(revision)d was not activated: %(reason)s", name=spec.name, revision=revision,
                reason=exc), "error")
        return redirect(back)
    flash(_("%(name)s r%(revision)d is the active revision now.", name=spec.name, revision=job.revision), "success")
    return redirect(back)


@bp.route("/specs/<name>/delete", methods=["POST"])
def delete(name):
    spec = _spec_or_404(name)
    delete_images = bool(request.form.get("delete_pushed_images"))
    try:
        outcome = delete_spec(spec, delete_pushed_images=delete_images, force=bool(request.form.get("force")))
    except SpecNotDeleted as exc:
        flash(Markup("{}{}").format(exc, _error_list(exc.errors)), "error")
        return redirect(url_for("specs.index"))
    if delete_images:
        flash(_("Deleted %(name)s with its build jobs and logs. Its pushed images were deleted from the registry "
                "(%(tags)d tag(s)).", name=name, tags=len(outcome.pushed_tags_deleted)), "success")
    else:
        flash(_("Deleted %(name)s with its build jobs and logs. Its pushed images stay in the registry.", name=name),
              "success")
    for warning in outcome.warnings:
        flash(warning, "warning")
    return redirect(url_for("specs.index"))


@bp.route("/specs/<name>/check-base", methods=["POST"])
def check_base(name):
    # Imported here: the watch builds on the catalogue's services, which import this package.
    from ..watch import base_check

    spec = _spec_or_404(name)
    try:
        result = base_check.check_spec_base(spec, acting_username())
    except base_check.CheckBusy as exc:
        flash(str(exc), "info")
        return redirect(url_for("specs.edit", name=spec.name))
    if result.error:
        flash(_("The base check failed: %(error)s", error=stored_text(result.error)), "error")
    elif result.note:
        flash(result.note, "info")
    elif result.job:
        flash(_job_started_message(_("The base image moved (%(old)s -> %(new)s).", old=result.built_from,
                                     new=result.current_digest), result.job), "success")
    elif result.moved:
        flash(_("The base image moved to %(digest)s (policy %(policy)s: no build started).",
                digest=result.current_digest, policy=spec.base_policy), "warning")
    else:
        flash(_("The base image has not moved (%(digest)s).", digest=result.current_digest), "info")
    return redirect(url_for("specs.edit", name=spec.name))


def _error_list(errors: list[str]) -> Markup:
    if not errors:
        return Markup("")
    return Markup("<ul>{}</ul>").format(Markup("").join(Markup("<li>{}</li>").format(e) for e in errors))
