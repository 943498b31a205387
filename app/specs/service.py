"""The catalogue's services: create, change and delete specs, and start their build jobs.

Routes (pages and API) stay thin and call these; validation is the pure module
``validation``, the Containerfile comes from ``containerfile``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Select, func, select
from sqlalchemy.orm import aliased, defer

from ..builds import maintenance
from ..builds.control import cancel_job, supersede_queued
from ..builds.queue import enqueue_build
from ..extensions import db
from ..models import BuildJob, ImageSpec, JobStatus, RegistryCredential, utcnow
from ..ops.logging import kv
from .containerfile import input_hash, render_containerfile
from .validation import PACKAGE_FIELDS, FieldError, SpecInput, ValidationResult, validate_spec

log = logging.getLogger(__name__)

# How long deleting a spec waits for its running build to stop (the runner notices a
# cancel within one heartbeat and then stops the build in Podman).
DELETE_WAIT_SECONDS = 20
DELETE_POLL_SECONDS = 0.25


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


def _validate(data: dict, *, check_name: bool) -> ValidationResult:
    """validate_spec with the operator's allowed conda channels."""
    return validate_spec(
        data, allowed_channels=current_app.config.get("CONDA_ALLOWED_CHANNELS", ()), check_name=check_name
    )


def check_spec(data: dict, *, existing: ImageSpec | None = None) -> ValidationResult:
    """validate_spec plus what needs the database: unique name, known pull secret."""
    if existing is not None:
        data = {**data, "name": existing.name}
    result = _validate(data, check_name=existing is None)
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
    result = _validate(data, check_name=False)
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


class SpecNotDeleted(Exception):
    """The spec could not be deleted now; it is left as it was (its builds cancelled).
    The message is for the admin; `errors` lists each registry failure."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.errors = errors or []


@dataclass
class DeleteOutcome:
    job_ids: list[int]
    pushed_tags_deleted: list[str]
    local_images_removed: list[str]
    warnings: list[str]


def delete_spec(spec: ImageSpec, *, delete_pushed_images: bool = False) -> DeleteOutcome:
    """Delete a spec with its jobs and logs, its RQ entries and its local images, and,
    when asked, its pushed images in the registry.

    Its active builds are cancelled first, and the rows deleted only once the runner has
    ended them (up to DELETE_WAIT_SECONDS): a runner whose row vanished would carry on,
    push, and leave its image and RQ entry behind after our cleanup. The registry goes
    before the rows, so a registry failure leaves a spec the admin can delete again.
    Local images and RQ entries go after; what fails there is a warning, left to the
    scheduled prune (images of specs that no longer exist) and to RQ's expiry.
    Raises SpecNotDeleted, with nothing deleted."""
    name = spec.name
    stopping = _cancel_active_jobs(spec)
    still_running = _wait_for_runners(spec.id, stopping)
    if still_running:
        revisions = ", ".join(f"r{revision}" for revision in still_running)
        raise SpecNotDeleted(
            f"The build {revisions} of {name} is being cancelled but has not stopped yet; "
            "nothing was deleted. Try again in a few seconds (a build whose worker was lost "
            "ends within HEARTBEAT_TIMEOUT)."
        )
    outcome = DeleteOutcome(job_ids=[], pushed_tags_deleted=[], local_images_removed=[], warnings=[])
    if delete_pushed_images:
        outcome.pushed_tags_deleted, errors = maintenance.delete_pushed_images(name)
        if errors:
            raise SpecNotDeleted(
                f"Some pushed images of {name} could not be deleted from the registry, so the spec was kept "
                f"(tags deleted: {', '.join(outcome.pushed_tags_deleted) or 'none'}).",
                errors,
            )
    outcome.job_ids = list(db.session.scalars(select(BuildJob.id).where(BuildJob.spec_id == spec.id)))
    db.session.delete(spec)
    db.session.commit()
    log.info("event=spec_deleted spec=%s jobs=%s pushed_tags_deleted=%s", name, kv(outcome.job_ids),
             kv(outcome.pushed_tags_deleted))
    maintenance.forget_rq_jobs(outcome.job_ids)
    try:
        outcome.local_images_removed = maintenance.remove_local_images(name)
    except Exception as exc:  # Podman down or refusing: the scheduled prune removes them later
        log.warning("event=local_images_not_removed spec=%s error=%s", name, kv(f"{type(exc).__name__}: {exc}"))
        outcome.warnings.append(
            f"Its images in the build host's storage could not be removed now ({type(exc).__name__}); "
            "the scheduled image prune removes them."
        )
    return outcome


def _cancel_active_jobs(spec: ImageSpec) -> list[int]:
    """Cancel the spec's queued and running jobs (a running one is asked to stop); their ids."""
    active = db.session.scalars(
        select(BuildJob).where(BuildJob.spec_id == spec.id, BuildJob.status.in_(JobStatus.ACTIVE))
    ).all()
    for job in active:
        cancel_job(job, f"spec {spec.name} deleted")
    return [job.id for job in active]


def _wait_for_runners(spec_id: int, job_ids: list[int]) -> list[int]:
    """Wait until no job of the spec runs and RQ has finished the ones that did; the
    revisions still running when DELETE_WAIT_SECONDS are up (empty: all ended)."""
    deadline = time.monotonic() + DELETE_WAIT_SECONDS
    while True:
        db.session.commit()  # a fresh snapshot for each look
        running = db.session.scalars(
            select(BuildJob.revision).where(BuildJob.spec_id == spec_id, BuildJob.status == JobStatus.RUNNING)
        ).all()
        rq_busy = not running and any(maintenance.rq_job_running(job_id) for job_id in set(job_ids))
        if not running and not rq_busy:
            return []
        if time.monotonic() >= deadline:
            # A row that ended while RQ still counts its job as started (a worker killed
            # after the row's final write) need not hold up the delete.
            return running
        time.sleep(DELETE_POLL_SECONDS)


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


def spec_rows(specs=None):
    """Each spec with its latest job and latest succeeded job, in three queries in all.

    ``specs``: a select of ImageSpec, or specs already loaded (a page); all by name if None.
    """
    if specs is None or isinstance(specs, Select):
        specs = db.session.scalars(specs if specs is not None else select(ImageSpec).order_by(ImageSpec.name)).all()
    ids = [s.id for s in specs]
    if not ids:
        return []
    latest = _latest_jobs(ids)
    succeeded = _latest_jobs(ids, JobStatus.SUCCEEDED)
    return [(s, latest.get(s.id), succeeded.get(s.id)) for s in specs]


def _latest_jobs(spec_ids, status=None) -> dict[int, BuildJob]:
    """The newest job (of ``status``) of each spec, without the snapshot lists show no part of.

    Each spec's job is found by walking its (spec_id, revision) index from the top: a grouped
    max() over all of the specs' jobs made PostgreSQL read the whole jobs table.
    """
    candidate = aliased(BuildJob)
    newest = select(candidate.id).where(candidate.spec_id == ImageSpec.id)
    if status:
        newest = newest.where(candidate.status == status)
    newest = newest.order_by(candidate.revision.desc()).limit(1).correlate(ImageSpec).scalar_subquery()
    jobs = db.session.scalars(
        select(BuildJob)
        .options(defer(BuildJob.spec_snapshot))
        .where(BuildJob.id.in_(select(newest).where(ImageSpec.id.in_(spec_ids))))
    )
    return {job.spec_id: job for job in jobs}
