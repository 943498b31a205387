"""Children follow their parent: when a spec's active revision changes, each spec built on
its ``latest`` with base policy ``rebuild`` gets one job (trigger ``parent-changed``).

The signal is sent after the parent's ``latest`` has moved, so the child's build pulls the
new parent. A child's own build activating sends the signal again, so chains cascade; a
child with a job queued already gets that job replaced (``supersede_queued``), so a burst
of parent builds leaves one queued job per child.

A child whose newest job was made after ``latest`` moved is left alone: that job pulls (or
pulled) the new parent already.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select

from ..extensions import db
from ..models import BasePolicy, BuildJob, ImageSpec, Trigger
from ..ops.logging import kv
from ..revisions.events import active_revision_changed
from ..specs.service import JobTrigger, rebuild_spec
from . import lineage

log = logging.getLogger(__name__)


def _made_after(child: ImageSpec, moved_at: datetime | None) -> bool:
    if moved_at is None:
        return False
    newest = db.session.scalar(select(func.max(BuildJob.created_at)).where(BuildJob.spec_id == child.id))
    return newest is not None and newest >= moved_at


def rebuild_children(parent: ImageSpec, revision: int, moved_at: datetime | None = None) -> list[BuildJob]:
    """One parent-changed job for each child that follows `parent`'s latest, unless the
    child's newest job was made after ``latest`` moved (at ``moved_at``)."""
    jobs = []
    for child in lineage.children_of(parent):
        if child.base_policy != BasePolicy.REBUILD or not lineage.follows_latest(child):
            continue
        if _made_after(child, moved_at):
            log.info("spec=%s event=parent_changed parent=%s revision=%s job=none reason=newer_job",
                     child.name, parent.name, revision)
            continue
        job = rebuild_spec(child, JobTrigger(Trigger.PARENT_CHANGED, None, f"{parent.name} r{revision}"))
        log.info("spec=%s event=parent_changed parent=%s revision=%s job=%s", child.name, parent.name,
                 revision, job.id)
        jobs.append(job)
    return jobs


@active_revision_changed.connect
def _on_active_revision_changed(spec: ImageSpec, job: BuildJob, previous=None, moved_at=None, **_):
    try:
        rebuild_children(spec, job.revision, moved_at)
    except Exception as exc:  # the parent's activation has happened; its children wait for the next one
        db.session.rollback()
        log.warning("spec=%s event=cascade_failed error=%s", spec.name, kv(f"{type(exc).__name__}: {exc}"))
