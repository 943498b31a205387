"""The catalogue's services: create, change and delete specs, and start their build jobs.

Routes (pages and API) stay thin and call these; validation is the pure module
``validation``, the Containerfile comes from ``containerfile``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import aliased, defer

from .. import audit
from ..builds import maintenance
from ..builds.control import cancel_job, supersede_queued
from ..builds.queue import enqueue_build
from ..extensions import db
from ..i18n import stored as said
from ..models import BasePolicy, BuildJob, ImageSpec, JobStatus, RegistryCredential, Trigger, utcnow
from ..ops.logging import kv
from ..watch import lineage
from .containerfile import input_hash, render_containerfile
from .validation import PACKAGE_FIELDS, FieldError, SpecInput, ValidationResult, validate_spec

log = logging.getLogger(__name__)

# How long deleting a spec waits for its running build to stop (the runner notices a
# cancel within one heartbeat and then stops the build in Podman).
DELETE_WAIT_SECONDS = 20
DELETE_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class JobTrigger:
    """Why a job starts and who started it (``user`` None: the system)."""

    kind: str = Trigger.UNKNOWN
    user: str | None = None
    detail: str | None = None


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
        test_command=spec.test_command or None,
    )


def _validate(data: dict, *, check_name: bool) -> ValidationResult:
    """validate_spec with the operator's allowed conda channels and line limit."""
    return validate_spec(
        data,
        allowed_channels=current_app.config.get("CONDA_ALLOWED_CHANNELS", ()),
        check_name=check_name,
        max_lines=current_app.config["MAX_PACKAGE_LINES"],
    )


def check_spec(data: dict, *, existing: ImageSpec | None = None) -> ValidationResult:
    """validate_spec plus what needs the database: unique name, known pull secret."""
    if existing is not None:
        data = {**data, "name": existing.name}
    result = _validate(data, check_name=existing is None)
    name = _text(data.get("name"))
    name_is_valid = not any(error.field == "name" for error in result.errors)
    if (existing is None and name and name_is_valid
            and db.session.scalar(select(ImageSpec.id).where(ImageSpec.name == name))):
        result.errors.append(FieldError("name", _("A spec named %(name)s already exists.", name=repr(name))))
    secret = _text(data.get("pull_secret")) or None
    # PostgreSQL refuses to compare text holding NUL: such a name is simply unknown.
    if secret and ("\x00" in secret or not _credential(secret)):
        result.errors.append(FieldError("pull_secret", _("No registry credential named %(name)s.", name=repr(secret))))
    policy = data.get("base_policy")
    if policy is not None and policy not in BasePolicy.ALL:
        result.errors.append(FieldError("base_policy", _("Must be one of %(choices)s.",
                                                         choices=", ".join(BasePolicy.ALL))))
    if result.spec is not None:
        cycle = lineage.cycle_through(result.spec.name, result.spec.base_image)
        if cycle:
            result.errors.append(FieldError(
                "base_image", _("That base makes a cycle of specs built on each other: %(cycle)s.",
                                cycle=" -> ".join(cycle))))
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


def create_spec(data: dict, trigger: JobTrigger = JobTrigger(Trigger.CREATED)) -> SaveOutcome:
    result = check_spec(data)
    if not result.ok:
        return SaveOutcome(result)
    spec = ImageSpec(name=result.spec.name)
    _apply(spec, result.spec)
    _apply_settings(spec, data)
    db.session.add(spec)
    db.session.flush()
    job = _new_job(spec, result.spec, trigger)
    filled = {key: value for key, value in _audited(result.spec).items() if value}
    _record_job(audit.SPEC_CREATED, spec, job, trigger, audit.diff({}, filled))
    db.session.commit()
    enqueue_build(job.id)
    return SaveOutcome(result, spec, job)


def update_spec(spec: ImageSpec, data: dict, trigger: JobTrigger = JobTrigger(Trigger.EDITED)) -> SaveOutcome:
    """Apply a change; a new job starts only when the build inputs really changed."""
    result = check_spec(data, existing=spec)
    if not result.ok:
        return SaveOutcome(result, spec)
    before = spec_input_from_row(spec)
    _apply_settings(spec, data)
    if result.spec == before:
        db.session.commit()  # a setting may have changed; no build for that
        return SaveOutcome(result, spec, None)
    _apply(spec, result.spec)
    job = _new_job(spec, result.spec, trigger)
    action = audit.BUILD_PINNED if trigger.kind == Trigger.PINNED else audit.SPEC_EDITED
    _record_job(action, spec, job, trigger, audit.diff(_audited(before), _audited(result.spec)))
    db.session.commit()
    enqueue_build(job.id)
    return SaveOutcome(result, spec, job)


def rebuild_spec(spec: ImageSpec, trigger: JobTrigger = JobTrigger(Trigger.REBUILD)) -> BuildJob:
    job = _new_job(spec, spec_input_from_row(spec), trigger)
    _record_job(audit.BUILD_REBUILT, spec, job, trigger)
    db.session.commit()
    enqueue_build(job.id)
    return job


def _audited(values: SpecInput) -> dict:
    """The spec's fields as the audit trail shows them (the name is the row's spec)."""
    return {key: value for key, value in asdict(values).items() if key != "name"}


def _record_job(action: str, spec: ImageSpec, job: BuildJob, trigger: JobTrigger, changes=None) -> None:
    detail = f"r{job.revision} ({trigger.kind}{': ' + trigger.detail if trigger.detail else ''})"
    audit.record(action, spec=spec, target=detail, changes=changes, user=trigger.user)


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


class SpecIsBase(SpecNotDeleted):
    """Other specs are built on this one; deleting it needs ``force`` (their builds would
    fail to pull their base)."""

    def __init__(self, spec: ImageSpec, children: list[ImageSpec]):
        self.children = [child.name for child in children]
        super().__init__(
            _("%(name)s is the base image of %(children)s: their next builds would fail. "
              "Change their base first, or delete it anyway.", name=spec.name, children=", ".join(self.children))
        )


def delete_spec(spec: ImageSpec, *, delete_pushed_images: bool = False, force: bool = False) -> DeleteOutcome:
    """Delete a spec with its jobs and logs, its RQ entries and its local images, and,
    when asked, its pushed images in the registry.

    Its active builds are cancelled first, and the rows deleted only once the runner has
    ended them (up to DELETE_WAIT_SECONDS): a runner whose row vanished would carry on,
    push, and leave its image and RQ entry behind after our cleanup. The registry goes
    before the rows, so a registry failure leaves a spec the admin can delete again.
    Local images and RQ entries go after; what fails there is a warning, left to the
    scheduled prune (images of specs that no longer exist) and to RQ's expiry.
    Raises SpecNotDeleted, with nothing deleted (SpecIsBase: other specs are built on it
    and `force` is off)."""
    name = spec.name
    children = lineage.children_of(spec)
    if children and not force:
        raise SpecIsBase(spec, children)
    stopping = _cancel_active_jobs(spec)
    still_running = _wait_for_runners(spec.id, stopping)
    if still_running:
        revisions = ", ".join(f"r{revision}" for revision in still_running)
        raise SpecNotDeleted(
            _("The build %(revisions)s of %(name)s is being cancelled but has not stopped yet; "
              "nothing was deleted. Try again in a few seconds (a build whose worker was lost "
              "ends within HEARTBEAT_TIMEOUT).", revisions=revisions, name=name)
        )
    outcome = DeleteOutcome(job_ids=[], pushed_tags_deleted=[], local_images_removed=[], warnings=[])
    if delete_pushed_images:
        outcome.pushed_tags_deleted, errors = maintenance.delete_pushed_images(name)
        if errors:
            deleted = ", ".join(outcome.pushed_tags_deleted) or _("none")
            raise SpecNotDeleted(
                _("Some pushed images of %(name)s could not be deleted from the registry, so the spec was kept "
                  "(tags deleted: %(tags)s).", name=name, tags=deleted),
                errors,
            )
    outcome.job_ids = list(db.session.scalars(select(BuildJob.id).where(BuildJob.spec_id == spec.id)))
    db.session.delete(spec)
    audit.record(audit.SPEC_DELETED, spec=name, target=f"{len(outcome.job_ids)} job(s)",
                 changes={"pushed_images_deleted": (None, outcome.pushed_tags_deleted)} if delete_pushed_images else None)
    db.session.commit()
    log.info("event=spec_deleted spec=%s jobs=%s pushed_tags_deleted=%s", name, kv(outcome.job_ids),
             kv(outcome.pushed_tags_deleted))
    maintenance.forget_rq_jobs(outcome.job_ids)
    try:
        outcome.local_images_removed = maintenance.remove_local_images(name)
    except Exception as exc:  # Podman down or refusing: the scheduled prune removes them later
        log.warning("event=local_images_not_removed spec=%s error=%s", name, kv(f"{type(exc).__name__}: {exc}"))
        outcome.warnings.append(
            _("Its images in the build host's storage could not be removed now (%(error)s); "
              "the scheduled image prune removes them.", error=type(exc).__name__)
        )
    return outcome


def _cancel_active_jobs(spec: ImageSpec) -> list[int]:
    """Cancel the spec's queued and running jobs (a running one is asked to stop); their ids."""
    active = db.session.scalars(
        select(BuildJob).where(BuildJob.spec_id == spec.id, BuildJob.status.in_(JobStatus.ACTIVE))
    ).all()
    for job in active:
        cancel_job(job, said.SPEC_DELETED % {"spec": spec.name})
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
    spec.test_command = values.test_command
    spec.updated_at = utcnow()


def _apply_settings(spec: ImageSpec, data: dict) -> None:
    """The spec's settings that are not build inputs (a change starts no job); a setting
    left out of `data` keeps its value."""
    if data.get("auto_activate") is not None:
        spec.auto_activate = bool(data["auto_activate"])
    elif spec.auto_activate is None:
        spec.auto_activate = True
    if data.get("base_policy") is not None:
        spec.base_policy = data["base_policy"]


def _new_job(spec: ImageSpec, values: SpecInput, trigger: JobTrigger) -> BuildJob:
    containerfile = render_containerfile(values)
    last = db.session.scalar(select(func.max(BuildJob.revision)).where(BuildJob.spec_id == spec.id))
    job = BuildJob(
        spec_id=spec.id,
        revision=(last or 0) + 1,
        input_hash=input_hash(containerfile),
        status=JobStatus.QUEUED,
        trigger_kind=trigger.kind,
        trigger_user=trigger.user,
        trigger_detail=trigger.detail,
        spec_snapshot={
            "name": values.name,
            "base_image": values.base_image,
            "pull_secret": values.pull_secret,
            "apt": list(values.apt),
            "pip": list(values.pip),
            "conda": list(values.conda),
            "test_command": values.test_command,
            "containerfile": containerfile,
        },
    )
    db.session.add(job)
    spec.base_update_digest = None  # the new build takes the base as it is now
    db.session.flush()
    supersede_queued(spec, job)
    return job


def list_stamp() -> str:
    """A version of the spec list that changes when a spec or a job is added or removed:
    the open list asks for it every few seconds instead of one poll per row. One query on
    the primary keys (a new job is a new, higher id; a removed spec changes the count)."""
    newest_job, specs, newest_spec = db.session.execute(
        select(
            select(func.max(BuildJob.id)).scalar_subquery(),
            select(func.count(ImageSpec.id)).scalar_subquery(),
            select(func.max(ImageSpec.id)).scalar_subquery(),
        )
    ).one()
    return f"{newest_job or 0}.{specs}.{newest_spec or 0}"


def spec_rows(specs=None):
    """Each spec with its latest job and its active job (the image it shows), in three
    queries in all.

    ``specs``: a select of ImageSpec, or specs already loaded (a page); all by name if None.
    """
    if specs is None or isinstance(specs, Select):
        specs = db.session.scalars(specs if specs is not None else select(ImageSpec).order_by(ImageSpec.name)).all()
    ids = [s.id for s in specs]
    if not ids:
        return []
    latest = _latest_jobs(ids)
    active = _active_jobs(ids)
    return [(s, latest.get(s.id), active.get(s.id)) for s in specs]


def _latest_jobs(spec_ids) -> dict[int, BuildJob]:
    """The newest job of each spec, without the snapshot lists show no part of.

    Each spec's job is found by walking its (spec_id, revision) index from the top: a grouped
    max() over all of the specs' jobs made PostgreSQL read the whole jobs table.
    """
    candidate = aliased(BuildJob)
    newest = (
        select(candidate.id)
        .where(candidate.spec_id == ImageSpec.id)
        .order_by(candidate.revision.desc())
        .limit(1)
        .correlate(ImageSpec)
        .scalar_subquery()
    )
    jobs = db.session.scalars(
        select(BuildJob)
        .options(defer(BuildJob.spec_snapshot))
        .where(BuildJob.id.in_(select(newest).where(ImageSpec.id.in_(spec_ids))))
    )
    return {job.spec_id: job for job in jobs}


def _active_jobs(spec_ids) -> dict[int, BuildJob]:
    """The active job of each spec that has one: one lookup per spec on the
    (spec_id, revision) unique index."""
    jobs = db.session.scalars(
        select(BuildJob)
        .options(defer(BuildJob.spec_snapshot))
        .join(ImageSpec, and_(ImageSpec.id == BuildJob.spec_id, ImageSpec.active_revision == BuildJob.revision))
        .where(ImageSpec.id.in_(spec_ids))
    )
    return {job.spec_id: job for job in jobs}
