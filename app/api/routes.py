"""API endpoints: parse, call one service, answer JSON. See docs/API.md."""
from dataclasses import asdict
from pathlib import Path

from flask import abort, jsonify, request, send_file, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..auth.service import acting_username
from ..builds.control import cancel_job
from ..builds.logs import read_log
from ..builds.logview import strip_ansi
from ..credentials.service import (
    CredentialInUse,
    create_credential,
    delete_credential,
    update_credential,
    validate_credential,
)
from ..extensions import db
from ..models import BuildJob, ImageSpec, JobStatus, LogChunk, RegistryCredential, Trigger
from ..specs.service import (
    JobTrigger,
    SpecIsBase,
    SpecNotDeleted,
    check_spec,
    create_spec,
    delete_spec,
    rebuild_spec,
    spec_input_from_row,
    spec_rows,
    update_spec,
)
from ..specs.validation import FieldError
from . import bp
from .errors import InvalidInput
from .payloads import (
    CREDENTIAL_FIELDS,
    SPEC_FIELDS,
    credential_fields,
    json_object,
    query_bool,
    sorted_errors,
    spec_fields,
)
from ..params import query_int
from .serializers import credential_json, job_json, spec_json

OPENAPI_FILE = Path(__file__).with_name("openapi.yaml")
MAX_PER_PAGE = 100


@bp.get("/openapi.yaml")
def openapi():
    return send_file(OPENAPI_FILE, mimetype="application/yaml")


# Specs

@bp.get("/specs")
def list_specs():
    page, per_page = _page_parameters(default_per_page=50)
    total = db.session.scalar(select(func.count(ImageSpec.id)))
    rows = spec_rows(_specs_query().limit(per_page).offset((page - 1) * per_page))
    return _paged(specs=[spec_json(*row) for row in rows], page=page, per_page=per_page, total=total)


@bp.post("/specs")
def create_spec_endpoint():
    data, shape_errors, unusable = spec_fields(json_object())
    if shape_errors:
        _reject(shape_errors, check_spec(data).errors, unusable)
    outcome = create_spec(data, JobTrigger(Trigger.CREATED, acting_username()))
    if not outcome.ok:
        _reject([], outcome.result.errors)
    return jsonify({**_spec_with_jobs(outcome.spec.name), "job": job_json(outcome.job)}), 201


@bp.get("/specs/<name>")
def get_spec(name):
    return jsonify(_spec_with_jobs(name))


@bp.patch("/specs/<name>")
def update_spec_endpoint(name):
    spec = _spec_or_404(name)
    data, shape_errors, unusable = spec_fields(json_object())
    if "name" in data and data["name"] != spec.name:
        shape_errors.append(FieldError("name", _("The name cannot be changed; create a new spec instead.")))
        unusable.add("name")
    merged = {**asdict(spec_input_from_row(spec)), **data}
    if shape_errors:
        _reject(shape_errors, check_spec(merged, existing=spec).errors, unusable)
    outcome = update_spec(spec, merged, JobTrigger(Trigger.EDITED, acting_username()))
    if not outcome.ok:
        _reject([], outcome.result.errors)
    job = job_json(outcome.job) if outcome.job else None
    return jsonify({**_spec_with_jobs(spec.name), "job": job})


@bp.delete("/specs/<name>")
def delete_spec_endpoint(name):
    """Cancels the spec's builds first; `?delete_images=true` also deletes its pushed
    images from the registry. 409 when it was not deleted (other specs built on it and
    no `?force=true`, a build still stopping, or the registry refusing), with nothing deleted."""
    spec = _spec_or_404(name)
    try:
        delete_spec(spec, delete_pushed_images=query_bool("delete_images", False), force=query_bool("force", False))
    except SpecIsBase as exc:
        return jsonify(error=str(exc), registry_errors=[], children=exc.children), 409
    except SpecNotDeleted as exc:
        return jsonify(error=str(exc), registry_errors=exc.errors), 409
    return "", 204


@bp.get("/specs/<name>/jobs")
def list_spec_jobs(name):
    spec = _spec_or_404(name)
    page, per_page = _page_parameters(default_per_page=20)
    total = db.session.scalar(select(func.count(BuildJob.id)).where(BuildJob.spec_id == spec.id))
    jobs = db.session.scalars(
        select(BuildJob)
        .where(BuildJob.spec_id == spec.id)
        .order_by(BuildJob.revision.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return _paged(jobs=[job_json(job) for job in jobs], page=page, per_page=per_page, total=total)


@bp.post("/specs/<name>/rebuild")
def rebuild_spec_endpoint(name):
    job = rebuild_spec(_spec_or_404(name), JobTrigger(Trigger.REBUILD, acting_username()))
    return jsonify(job_json(job)), 202


# Jobs

@bp.get("/jobs/<int:job_id>")
def get_job(job_id):
    return jsonify(job_json(_job_or_404(job_id), with_snapshot=True))


@bp.get("/jobs/<int:job_id>/log")
def get_job_log(job_id):
    # The status is read before the log: a job that finishes in between is reported
    # unfinished once more, so the caller's next poll still gets its last chunks.
    job = _job_or_404(job_id)
    job_finished = job.status in JobStatus.FINISHED
    text, next_offset = read_log(job.id, query_int("offset", 0, minimum=0))
    more = db.session.scalar(
        select(LogChunk.id).where(LogChunk.job_id == job.id, LogChunk.seq >= next_offset).limit(1)
    )
    return jsonify(text=strip_ansi(text), next_offset=next_offset, finished=job_finished and more is None)


@bp.post("/jobs/<int:job_id>/cancel")
def cancel_job_endpoint(job_id):
    """A queued job is cancelled at once; a running one is asked to stop (the worker
    ends it `cancelled` within seconds). Either way the request is accepted: 202."""
    job = _job_or_404(job_id)
    if not cancel_job(job):
        return jsonify(error=_("Job %(id)d has already finished (%(status)s).", id=job.id, status=job.status)), 409
    return jsonify(job_json(job)), 202


# Registry credentials

@bp.get("/credentials")
def list_credentials():
    creds = db.session.scalars(select(RegistryCredential).order_by(RegistryCredential.name))
    return jsonify(credentials=[credential_json(c) for c in creds])


@bp.post("/credentials")
def create_credential_endpoint():
    data, shape_errors, unusable = credential_fields(json_object())
    if shape_errors:
        _reject(shape_errors, validate_credential(data), unusable, CREDENTIAL_FIELDS)
    cred, errors = create_credential(data)
    if errors:
        _reject([], errors, fields=CREDENTIAL_FIELDS)
    return jsonify(credential_json(cred)), 201


@bp.get("/credentials/<name>")
def get_credential(name):
    return jsonify(credential_json(_credential_or_404(name)))


@bp.patch("/credentials/<name>")
def update_credential_endpoint(name):
    cred = _credential_or_404(name)
    data, shape_errors, unusable = credential_fields(json_object())
    if data.pop("name", cred.name) != cred.name:
        shape_errors.append(FieldError("name", _("The name cannot be changed; create a new credential instead.")))
    if data.get("password") == "":
        shape_errors.append(FieldError("password", _("Leave the password out to keep the stored one.")))
        unusable.add("password")
    if shape_errors:
        current = {"registry": cred.registry_host, "username": cred.username}
        _reject(shape_errors, validate_credential({**current, **data}, existing=cred), unusable, CREDENTIAL_FIELDS)
    errors = update_credential(cred, data)
    if errors:
        _reject([], errors, fields=CREDENTIAL_FIELDS)
    return jsonify(credential_json(cred))


@bp.delete("/credentials/<name>")
def delete_credential_endpoint(name):
    try:
        delete_credential(_credential_or_404(name))
    except CredentialInUse as exc:
        return jsonify(error=str(exc), specs=[s.name for s in exc.specs]), 409
    return "", 204


# Helpers

def _page_parameters(default_per_page: int) -> tuple[int, int]:
    page = query_int("page", 1, minimum=1)
    return page, query_int("per_page", default_per_page, minimum=1, maximum=MAX_PER_PAGE, clamp=True)


def _paged(*, page: int, per_page: int, total: int, **items):
    """One page of a list, with its place in the whole (page, per_page, total, pages)
    and an RFC 8288 Link header to the first, previous, next and last pages."""
    pages = (total + per_page - 1) // per_page
    response = jsonify(**items, page=page, per_page=per_page, total=total, pages=pages)
    targets = {"first": 1, "prev": page - 1 if page > 1 else None,
               "next": page + 1 if page < pages else None, "last": max(pages, 1)}
    links = [
        f'<{url_for(request.endpoint, **request.view_args, page=number, per_page=per_page)}>; rel="{rel}"'
        for rel, number in targets.items()
        if number is not None
    ]
    response.headers["Link"] = ", ".join(links)
    return response


def _specs_query():
    return select(ImageSpec).options(selectinload(ImageSpec.pull_secret)).order_by(ImageSpec.name)


def _spec_or_404(name) -> ImageSpec:
    spec = db.session.scalar(select(ImageSpec).where(ImageSpec.name == name))
    if spec is None:
        _no_spec(name)
    return spec


def _spec_with_jobs(name) -> dict:
    rows = spec_rows(_specs_query().where(ImageSpec.name == name))
    if not rows:
        _no_spec(name)
    return spec_json(*rows[0])


def _no_spec(name):
    abort(404, _("No spec named %(name)s.", name=repr(name)))


def _job_or_404(job_id) -> BuildJob:
    job = db.session.get(BuildJob, job_id)
    if job is None:
        abort(404, _("No job %(id)d.", id=job_id))
    return job


def _credential_or_404(name) -> RegistryCredential:
    cred = db.session.scalar(select(RegistryCredential).where(RegistryCredential.name == name))
    if cred is None:
        abort(404, _("No registry credential named %(name)s.", name=repr(name)))
    return cred


def _reject(shape_errors, content_errors, unusable=(), fields=SPEC_FIELDS):
    """422 with the shape errors and the content errors of the fields that had a usable
    value (an unusable one would only add a misleading 'required')."""
    errors = shape_errors + [e for e in content_errors if e.field not in unusable]
    raise InvalidInput(sorted_errors(errors, fields))
