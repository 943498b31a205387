"""The active revision: the image a spec's users should take, and the registry's ``latest``.

Activating a revision is the one way ``latest`` moves: the registry itself re-tags the
revision's manifest as ``latest`` (same bytes, same media type: nothing is rebuilt or
pulled) and the new digest is confirmed before the database says the revision is active,
so the active revision and ``latest`` never disagree. With REGISTRY_PUSH_LATEST off the
registry is only asked whether it still has the revision's image; nothing moves there.

- ``activate_revision`` is the admin's Activate (page and API), which is also the rollback:
  any succeeded revision whose image the registry still has.
- ``after_build_succeeded`` is the runner's one call once a job's final state is
  ``succeeded``: with the spec's ``auto_activate`` on, that revision becomes active. When it
  cannot (the registry refuses or is down), the job stays succeeded, the active revision
  and ``latest`` stay where they were, and the job's log says so and why; the admin
  activates it from the Jobs tab once the registry answers.
- ``set_active`` records the change, commits, then sends the ``active_revision_changed``
  signal (receivers: ``app.watch``, which rebuilds the specs built on this one).
- ``active_job_ids`` is what retention and image pruning must never remove.
"""
from __future__ import annotations

import logging

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import and_, select

from ..builds.logs import append_log_chunk
from ..builds import maintenance
from ..builds.registry import ImageRef, RegistryError
from ..extensions import db
from ..i18n.labels import status_label
from ..models import BuildJob, ImageSpec, JobStatus, utcnow
from .events import active_revision_changed

log = logging.getLogger(__name__)


class UnknownRevision(Exception):
    """The spec has no job of that revision (answered 404)."""


class ActivationRefused(Exception):
    """The revision cannot become active; nothing changed. The message says why (409)."""


def set_active(spec: ImageSpec, job: BuildJob) -> None:
    """Make `job` (a succeeded job of `spec`) the active revision, commit, and signal."""
    previous = spec.active_revision
    moved_at = utcnow()  # ``latest`` already points at `job`'s image
    spec.active_revision = job.revision
    db.session.commit()
    log.info("spec=%s event=activated revision=%s previous=%s", spec.name, job.revision, previous)
    if previous != job.revision:
        active_revision_changed.send(spec, job=job, previous=previous, moved_at=moved_at)


def activate_revision(spec: ImageSpec, revision: int) -> BuildJob:
    """Make revision `revision` of `spec` active and move ``latest`` to its image.
    Raises UnknownRevision, or ActivationRefused with nothing changed."""
    job = db.session.scalar(select(BuildJob).where(BuildJob.spec_id == spec.id, BuildJob.revision == revision))
    if job is None:
        raise UnknownRevision(_("%(name)s has no revision r%(revision)d.", name=spec.name, revision=revision))
    _activate(spec, job)
    return job


def after_build_succeeded(job_id: int) -> bool:
    """A just-succeeded job becomes active when its spec activates new builds
    automatically and no newer revision is active already. True when it did; the
    job's log says what happened either way."""
    job = db.session.get(BuildJob, job_id)
    if job is None or job.status != JobStatus.SUCCEEDED:
        return False
    spec = job.spec
    stays = _active_now(spec)
    if not spec.auto_activate:
        _note(job, f"r{job.revision} waits for an admin to activate it ('Activate new builds automatically' "
                   f"is off); {stays}.")
        return False
    if (spec.active_revision or 0) > job.revision:
        _note(job, f"r{job.revision} is not activated: the newer r{spec.active_revision} is active.")
        return False
    try:
        # The line goes in with the change itself: a page that sees the revision active has the line too.
        _activate(spec, job, note=f"r{job.revision} is the active revision; {_latest_text(job)}.")
    except ActivationRefused as exc:
        db.session.rollback()
        log.warning("job=%s event=not_activated reason=%s", job_id, exc)
        _note(job, f"r{job.revision} succeeded but is not active: {exc} {stays[0].upper()}{stays[1:]}; "
                   f"activate r{job.revision} on the Jobs tab once the registry has it.")
        return False
    return True


def active_job(spec: ImageSpec) -> BuildJob | None:
    if spec.active_revision is None:
        return None
    return db.session.scalar(
        select(BuildJob).where(BuildJob.spec_id == spec.id, BuildJob.revision == spec.active_revision)
    )


def active_job_ids():
    """A select of the ids of every spec's active job (for retention and pruning)."""
    return select(BuildJob.id).join(
        ImageSpec, and_(ImageSpec.id == BuildJob.spec_id, ImageSpec.active_revision == BuildJob.revision)
    )


def _activate(spec: ImageSpec, job: BuildJob, note: str | None = None) -> None:
    """Checks, the registry, then set_active (with `note` appended to the job's log)."""
    if job.status != JobStatus.SUCCEEDED:
        raise ActivationRefused(_("r%(revision)d is %(status)s: only a succeeded revision can be activated.",
                                  revision=job.revision, status=status_label(job.status)))
    if not job.image or not job.digest:
        raise ActivationRefused(_("r%(revision)d has no pushed image.", revision=job.revision))
    _lock(spec)
    _move_latest(job)
    if note:
        append_log_chunk(job, f"==> {note}\n")
    set_active(spec, job)


def _lock(spec: ImageSpec) -> None:
    """On PostgreSQL, hold the spec's row while the registry moves `latest`, so two
    activations of one spec end with the database and the registry agreeing. (SQLite:
    one process in development.)"""
    db.session.commit()  # the registry call must not sit inside a read transaction
    if db.session.get_bind().dialect.name != "sqlite":
        db.session.execute(select(ImageSpec.id).where(ImageSpec.id == spec.id).with_for_update())


def _move_latest(job: BuildJob) -> None:
    """Re-tag the job's image as ``latest`` in the registry and confirm its digest; with
    REGISTRY_PUSH_LATEST off only confirm the registry still has the image."""
    ref = ImageRef.parse(job.image)
    client = maintenance.registry_client(ref.host)
    try:
        if current_app.config["REGISTRY_PUSH_LATEST"]:
            client.retag(ref.repository, ref.tag, "latest", expect_digest=job.digest)
            return
        found = client.manifest(ref.repository, ref.tag)
    except RegistryError as exc:
        raise ActivationRefused(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None
    if found is None:
        raise ActivationRefused(_("The registry no longer has %(image)s.", image=job.image))
    if found.digest != job.digest:
        raise ActivationRefused(_("The registry's %(image)s is %(found)s, not the image r%(revision)d built "
                                  "(%(digest)s).", image=job.image, found=found.digest, revision=job.revision,
                                  digest=job.digest))


def _active_now(spec: ImageSpec) -> str:
    if spec.active_revision is None:
        return "no revision is active yet"
    return f"the active revision stays r{spec.active_revision}"


def _latest_text(job: BuildJob) -> str:
    ref = ImageRef.parse(job.image)
    if not current_app.config["REGISTRY_PUSH_LATEST"]:
        return f"the registry's {ref.repository}:latest is left alone (REGISTRY_PUSH_LATEST is off)"
    return f"{ref.host}/{ref.repository}:latest is {job.digest}"


def _note(job: BuildJob, text: str) -> None:
    """One line at the end of the job's log (the log writer closed with the final state)."""
    append_log_chunk(job, f"==> {text}\n")
    db.session.commit()
