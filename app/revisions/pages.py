"""The revision pages for the signed-in admin: a job's Packages section (and its SBOM
download), compare two revisions, and the "Pin these versions" form. The same
services as the API (``manifest``, ``sbom``, ``compare``, ``pin``); routes stay thin.
"""
from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select

from ..extensions import db
from ..i18n.labels import spec_field_label
from ..models import BuildJob, ImageSpec, JobStatus
from ..specs.routes import _error_list as error_list
from .compare import RevisionNotFound, compare_revisions, parse_revision, previous_revision, revision_job
from .manifest import NoManifest, find_job, has_manifest, job_packages, manager_counts
from .pin import PinRefused, pin_spec
from .sbom import MEDIA_TYPE, sbom_document, sbom_filename

bp = Blueprint("revision_pages", __name__)

# The compare form offers this many of a spec's newest revisions (retention keeps fewer).
COMPARE_CHOICES = 500
PACKAGES_POLL = "every 2s"


def _job_or_404(job_id: int) -> BuildJob:
    return find_job(job_id) or abort(404)


def _spec_or_404(name: str) -> ImageSpec:
    return db.session.scalar(select(ImageSpec).where(ImageSpec.name == name)) or abort(404)


@bp.app_template_global()
def packages_section(job: BuildJob) -> dict:
    """What a job's Packages section shows (templates/revisions/_packages.html); the job
    page calls it from its template."""
    packages = job_packages(job) if has_manifest(job) else None
    return {
        "packages": packages,
        "package_counts": manager_counts(packages or []),
        "previous_revision": previous_revision(job),
        "pinnable_base": bool(job.base_digest) and not (job.spec_snapshot or {}).get("base_image", "").startswith("localhost/"),
        # Still running without a manifest: the section asks again until the verify step wrote it.
        "packages_trigger": PACKAGES_POLL if packages is None and job.status in JobStatus.ACTIVE else None,
    }


@bp.route("/jobs/<int:job_id>/packages")
def packages(job_id):
    job = _job_or_404(job_id)
    return render_template("revisions/_packages.html", job=job, section=packages_section(job))


@bp.route("/jobs/<int:job_id>/sbom.json")
def sbom(job_id):
    job = _job_or_404(job_id)
    try:
        document = sbom_document(job, job_packages(job))
    except NoManifest as exc:
        abort(404, str(exc))
    return Response(document, mimetype=MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{sbom_filename(job)}"'})


@bp.route("/specs/<name>/compare")
def compare(name):
    """?from=R1&to=R2; ?rev=R&rev=R (the Jobs tab's two ticked rows) redirects there;
    nothing chosen compares the two newest revisions."""
    spec = _spec_or_404(name)
    choices = db.session.execute(
        select(BuildJob.revision, BuildJob.status)
        .where(BuildJob.spec_id == spec.id)
        .order_by(BuildJob.revision.desc())
        .limit(COMPARE_CHOICES)
    ).all()
    context = {"spec": spec, "choices": choices, "comparison": None, "errors": {}, "problem": None}
    if "rev" in request.args:
        picked = request.args.getlist("rev")
        if len(picked) == 2:
            try:
                low, high = sorted(parse_revision(raw) for raw in picked)
            except ValueError as exc:
                context["problem"] = _("Revision: %(reason)s", reason=exc)
            else:
                return redirect(url_for(".compare", name=spec.name, **{"from": low, "to": high}))
        else:
            context["problem"] = _("Tick exactly two jobs to compare (%(num)d ticked).", num=len(picked))
        return render_template("revisions/compare.html", **context), 422
    if "from" not in request.args and "to" not in request.args:
        if len(choices) < 2:
            context["problem"] = _("%(name)s has %(num)d revision(s); compare needs two.", name=spec.name, num=len(choices))
            return render_template("revisions/compare.html", **context)
        return redirect(url_for(".compare", name=spec.name, **{"from": choices[1].revision, "to": choices[0].revision}))
    revisions = {}
    for param in ("from", "to"):
        try:
            revisions[param] = parse_revision(request.args.get(param))
        except ValueError as exc:
            context["errors"][param] = str(exc)
    context["selected"] = revisions
    if context["errors"]:
        return render_template("revisions/compare.html", **context), 422
    try:
        context["comparison"] = compare_revisions(spec, revisions["from"], revisions["to"])
    except RevisionNotFound as exc:
        context["problem"] = str(exc)
        return render_template("revisions/compare.html", **context), 404
    return render_template("revisions/compare.html", **context)


@bp.route("/specs/<name>/pin", methods=["POST"])
def pin(name):
    spec = _spec_or_404(name)
    try:
        revision = parse_revision(request.form.get("revision"))
        job = revision_job(spec, revision)
    except (ValueError, RevisionNotFound) as exc:
        flash(_("Not pinned: %(reason)s", reason=exc), "error")
        return redirect(url_for("specs.edit", name=spec.name, tab="jobs"))
    back = url_for("builds.job", job_id=job.id)
    try:
        outcome = pin_spec(spec, job, base=bool(request.form.get("base")), user=current_user.username)
    except PinRefused as exc:
        flash(_("Not pinned: %(reason)s", reason=exc), "error")
        return redirect(back)
    if not outcome.save.ok:
        problems = [_pin_problem(error) for error in outcome.save.result.errors]
        flash(Markup("{}{}").format(_("Not pinned: the pinned spec of r%(revision)d is not valid.", revision=revision),
                                    error_list(problems)), "error")
        return redirect(back)
    for note in outcome.notes:
        flash(_("%(field)s %(line)s: %(reason)s", field=note.field, line=repr(note.line), reason=note.reason), "warning")
    new_job = outcome.save.job
    if new_job is None:
        flash(_("%(name)s is already pinned to r%(revision)d's versions; no new build started.", name=spec.name,
                revision=revision), "info")
        return redirect(back)
    # Translated first, filled after: Markup's % escapes each value.
    flash(Markup(_('Pinned %(name)s to the versions of r%(revision)s. Build job <a href="%(url)s">r%(new)s</a> is queued.'))
          % {"name": spec.name, "revision": revision, "url": url_for("builds.job", job_id=new_job.id),
             "new": new_job.revision}, "success")
    return redirect(url_for("builds.job", job_id=new_job.id))


def _pin_problem(error) -> str:
    """A validation error of the pinned spec, as the flash lists it."""
    if error.line:
        return _("%(field)s line %(line)d: %(message)s", field=spec_field_label(error.field), line=error.line,
                 message=error.message)
    return _("%(field)s: %(message)s", field=spec_field_label(error.field), message=error.message)
