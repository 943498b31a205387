"""API endpoints over the revisions of a spec: a job's package manifest and its SBOM,
compare two revisions, pin a spec to a revision's versions. See docs/API.md."""
from flask import Response, abort, g, jsonify, request
from flask_babel import gettext as _

from ..models import MAX_INTEGER
from ..revisions.compare import RevisionNotFound, compare_revisions, parse_revision, revision_job
from ..revisions.manifest import NoManifest, find_job, job_packages, packages_json
from ..revisions.pin import PinRefused, pin_spec
from ..revisions.sbom import MEDIA_TYPE, sbom_document, sbom_filename
from ..specs.validation import PACKAGE_FIELDS, FieldError
from . import bp
from .errors import InvalidInput
from .payloads import json_object, must_be_a_boolean, must_be_between, sorted_errors, unknown_field
from .routes import _spec_or_404
from .serializers import job_json

PIN_FIELDS = ("revision", "base")


def _job_or_404(job_id):
    job = find_job(job_id)
    if job is None:
        abort(404, _("No job %(id)d.", id=job_id))
    return job


def _manifest_or_404(job):
    try:
        return job_packages(job)
    except NoManifest as exc:
        abort(404, str(exc))


@bp.get("/jobs/<int:job_id>/packages")
def get_job_packages(job_id):
    job = _job_or_404(job_id)
    return jsonify(packages_json(job, _manifest_or_404(job)))


@bp.get("/jobs/<int:job_id>/sbom")
def get_job_sbom(job_id):
    job = _job_or_404(job_id)
    document = sbom_document(job, _manifest_or_404(job))
    return Response(document, mimetype=MEDIA_TYPE,
                    headers={"Content-Disposition": f'inline; filename="{sbom_filename(job)}"'})


@bp.get("/specs/<name>/compare")
def compare_specs_revisions(name):
    spec = _spec_or_404(name)
    revisions, errors = {}, []
    for param in ("from", "to"):
        try:
            revisions[param] = parse_revision(request.args.get(param))
        except ValueError as exc:
            errors.append(FieldError(param, str(exc)))
    if errors:
        raise InvalidInput(errors)
    try:
        comparison = compare_revisions(spec, revisions["from"], revisions["to"])
    except RevisionNotFound as exc:
        abort(404, str(exc))
    return jsonify(comparison.as_json())


@bp.post("/specs/<name>/pin")
def pin_spec_endpoint(name):
    """202 with the job the pinned spec started; 200 with job null when the spec was
    already pinned exactly so."""
    spec = _spec_or_404(name)
    revision, base = _pin_body(json_object())
    try:
        outcome = pin_spec(spec, revision_job(spec, revision), base=base, user=g.api_user.username)
    except RevisionNotFound as exc:
        abort(404, str(exc))
    except PinRefused as exc:
        return jsonify(error=str(exc)), 409
    if not outcome.save.ok:
        raise InvalidInput(outcome.save.result.errors)
    job = outcome.save.job
    body = {
        "spec": spec.name,
        "revision": revision,
        "job": job_json(job) if job else None,
        "base_image": spec.base_image,
        **{field: list(getattr(spec, field) or []) for field in PACKAGE_FIELDS},
        "unpinned": [note.as_dict() for note in outcome.notes],
    }
    return jsonify(body), 202 if job else 200


def _pin_body(body: dict) -> tuple[int, bool]:
    errors = [FieldError(str(key), unknown_field(PIN_FIELDS)) for key in body if key not in PIN_FIELDS]
    revision = body.get("revision")
    if "revision" not in body:
        errors.append(FieldError("revision", _("A revision number is required.")))
    elif isinstance(revision, bool) or not isinstance(revision, int):
        errors.append(FieldError("revision", _("Must be a revision number (an integer).")))
    elif not 1 <= revision <= MAX_INTEGER:
        errors.append(FieldError("revision", must_be_between(1, MAX_INTEGER)))
    base = body.get("base", False)
    if not isinstance(base, bool):
        errors.append(FieldError("base", must_be_a_boolean()))
    if errors:
        raise InvalidInput(sorted_errors(errors, PIN_FIELDS))
    return revision, base
