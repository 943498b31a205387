"""The catalogue's services: create, change and delete specs, and start their build jobs.

Routes (pages and API) stay thin and call these; validation is the pure module
``validation``, the Containerfile comes from ``containerfile``.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select

from ..builds.control import supersede_queued
from ..builds.queue import enqueue_build
from ..extensions import db
from ..models import BuildJob, ImageSpec, JobStatus, RegistryCredential, utcnow
from .containerfile import input_hash, render_containerfile
from .validation import PACKAGE_FIELDS, FieldError, SpecInput, ValidationResult, validate_spec


@dataclass
class SaveOutcome:
    """What a create or update did: the spec, the job it started (if any), or errors."""

    result: ValidationResult
    spec: ImageSpec | None = None
    job: BuildJob | None = None

    @property
    def ok(self):
        return self.result.ok


def spec_input_from_row(spec: ImageSpec) -> SpecInput:
    return SpecInput(
        name=spec.name,
        base_image=spec.base_image,
        pull_secret=spec.pull_secret.name if spec.pull_secret else None,
        apt=list(spec.apt or []),
        pip=list(spec.pip or []),
        conda=list(spec.conda or []),
    )


def check_spec(data: dict, *, existing: ImageSpec | None = None) -> ValidationResult:
    """validate_spec plus what needs the database: unique name, known pull secret."""
    if existing is not None:
        data = {**data, "name": existing.name}
    result = validate_spec(
        data,
        allowed_channels=current_app.config.get("CONDA_ALLOWED_CHANNELS", ()),
        check_name=existing is None,
    )
    name = _text(data.get("name"))
    if existing is None and name and db.session.scalar(select(ImageSpec.id).where(ImageSpec.name == name)):
        result.errors.append(FieldError("name", f"A spec named {name!r} already exists."))
    secret = _text(data.get("pull_secret")) or None
    if secret and not _credential(secret):
        result.errors.append(FieldError("pull_secret", f"No registry credential named {secret!r}."))
    if result.errors:
        result.spec = None
    return result


def _text(value) -> str:
    """A stripped string field; other types were already reported by validate_spec."""
    return value.strip() if isinstance(value, str) else ""


def preview_containerfile(data: dict) -> tuple[str | None, ValidationResult]:
    """The Containerfile the current form would build, or None while it has errors."""
    result = validate_spec(
        data, allowed_channels=current_app.config.get("CONDA_ALLOWED_CHANNELS", ()), check_name=False
    )
    if not result.ok:
        return None, result
    return render_containerfile(result.spec), result


def create_spec(data: dict) -> SaveOutcome:
    result = check_spec(data)
    if not result.ok:
        return SaveOutcome(result)
    spec = ImageSpec(name=result.spec.name)
    _apply(spec, result.spec)
    db.session.add(spec)
    db.session.flush()
    job = _new_job(spec, result.spec)
    db.session.commit()
    enqueue_build(job.id)
    return SaveOutcome(result, spec, job)


def update_spec(spec: ImageSpec, data: dict) -> SaveOutcome:
    """Apply a change; a new job starts only when the build inputs really changed."""
    result = check_spec(data, existing=spec)
    if not result.ok:
        return SaveOutcome(result, spec)
    if result.spec == spec_input_from_row(spec):
        return SaveOutcome(result, spec, None)
    _apply(spec, result.spec)
    job = _new_job(spec, result.spec)
    db.session.commit()
    enqueue_build(job.id)
    return SaveOutcome(result, spec, job)


def rebuild_spec(spec: ImageSpec) -> BuildJob:
    job = _new_job(spec, spec_input_from_row(spec))
    db.session.commit()
    enqueue_build(job.id)
    return job


def delete_spec(spec: ImageSpec) -> None:
    db.session.delete(spec)
    db.session.commit()


def _credential(name: str) -> RegistryCredential | None:
    return db.session.scalar(select(RegistryCredential).where(RegistryCredential.name == name))


def _apply(spec: ImageSpec, values: SpecInput) -> None:
    spec.base_image = values.base_image
    spec.pull_secret = _credential(values.pull_secret) if values.pull_secret else None
    for field_name in PACKAGE_FIELDS:
        setattr(spec, field_name, list(getattr(values, field_name)))
    spec.updated_at = utcnow()


def _new_job(spec: ImageSpec, values: SpecInput) -> BuildJob:
    containerfile = render_containerfile(values)
    last = db.session.scalar(select(func.max(BuildJob.revision)).where(BuildJob.spec_id == spec.id))
    job = BuildJob(
        spec_id=spec.id,
        revision=(last or 0) + 1,
        input_hash=input_hash(containerfile),
        status=JobStatus.QUEUED,
        spec_snapshot={
            "name": values.name,
            "base_image": values.base_image,
            "pull_secret": values.pull_secret,
            "apt": list(values.apt),
            "pip": list(values.pip),
            "conda": list(values.conda),
            "containerfile": containerfile,
        },
    )
    db.session.add(job)
    db.session.flush()
    supersede_queued(spec, job)
    return job


def spec_rows(specs_query=None):
    """Each spec with its latest job and latest succeeded job, in three queries in all."""
    specs = db.session.scalars(specs_query if specs_query is not None else select(ImageSpec).order_by(ImageSpec.name)).all()
    ids = [s.id for s in specs]
    if not ids:
        return []
    latest = _latest_jobs(ids)
    succeeded = _latest_jobs(ids, JobStatus.SUCCEEDED)
    return [(s, latest.get(s.id), succeeded.get(s.id)) for s in specs]


def _latest_jobs(spec_ids, status=None) -> dict[int, BuildJob]:
    newest = select(BuildJob.spec_id, func.max(BuildJob.revision).label("revision")).where(
        BuildJob.spec_id.in_(spec_ids)
    )
    if status:
        newest = newest.where(BuildJob.status == status)
    newest = newest.group_by(BuildJob.spec_id).subquery()
    jobs = db.session.scalars(
        select(BuildJob).join(
            newest, (BuildJob.spec_id == newest.c.spec_id) & (BuildJob.revision == newest.c.revision)
        )
    )
    return {job.spec_id: job for job in jobs}
