"""Admin controls over build jobs: cancel, supersede, and one active build per spec.

Every state change is a compare-and-set (UPDATE ... WHERE status = ...), so a
cancel racing the worker's own queued -> running step has exactly one winner.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from sqlalchemy import exists, select, update
from sqlalchemy.orm import aliased

from .. import audit
from ..extensions import db
from ..i18n import stored as said
from ..models import BuildJob, ImageSpec, JobStatus, utcnow
from ..ops.logging import kv
from .queue import BUILD_FUNCTION, build_queue, enqueue_options, rq_job_id

log = logging.getLogger(__name__)

# RQ states in which the job has not started yet, so removing it means it never will.
_WAITING = (RQStatus.QUEUED, RQStatus.SCHEDULED, RQStatus.DEFERRED)


def cancel_job(job: BuildJob, reason: str = said.CANCELLED_BY_ADMIN_REASON) -> bool:
    """Cancel a queued job at once, or ask the runner to stop a running one.

    False when the job had already finished (nothing to do). Commits.
    """
    if _finish_queued([job.id], reason):
        _record_cancel(job, reason, JobStatus.QUEUED)
        db.session.commit()
        log.info("job=%s event=cancelled reason=%s", job.id, kv(reason))
        drop_from_redis(job.id)
        return True
    asked = db.session.execute(
        update(BuildJob)
        .where(BuildJob.id == job.id, BuildJob.status == JobStatus.RUNNING)
        .values(cancel_requested=True)
    ).rowcount
    if asked:
        _record_cancel(job, reason, JobStatus.RUNNING)
    db.session.commit()
    if asked:
        log.info("job=%s event=cancel_requested", job.id)
    return bool(asked)


def _record_cancel(job: BuildJob, reason: str, was: str) -> None:
    audit.record(audit.BUILD_CANCELLED, spec=job.spec, target=f"r{job.revision} ({reason})",
                 changes={"status": (was, JobStatus.CANCELLED if was == JobStatus.QUEUED else "stopping")})


def supersede_queued(spec: ImageSpec, new_job: BuildJob) -> list[int]:
    """Cancel the spec's older queued jobs: the latest edit wins. The caller commits.

    Their RQ entries are dropped right away; should the caller roll back instead,
    the rows are still queued and the reconciler enqueues them again.
    """
    older = db.session.scalars(
        select(BuildJob.id).where(
            BuildJob.spec_id == spec.id, BuildJob.status == JobStatus.QUEUED, BuildJob.id != new_job.id
        )
    ).all()
    superseded = _finish_queued(older, said.SUPERSEDED % {"revision": new_job.revision}) if older else []
    for job_id in superseded:
        log.info("job=%s event=superseded by_job=%s", job_id, new_job.id)
        drop_from_redis(job_id)
    return superseded


def can_start(job: BuildJob) -> bool:
    """True unless another job of the same spec is running (one active build per spec)."""
    return not db.session.scalar(
        select(BuildJob.id)
        .where(BuildJob.spec_id == job.spec_id, BuildJob.status == JobStatus.RUNNING, BuildJob.id != job.id)
        .limit(1)
    )


def claim_job(job_id: int, worker: str) -> bool:
    """queued -> running in one statement, only if no other job of its spec is running
    (and no cancel was asked for).

    This is can_start and the runner's compare-and-set made atomic: two workers taking
    two jobs of one spec at the same moment cannot both win. SQLite runs one writer at a
    time, so the single UPDATE decides; PostgreSQL first locks the spec row, so the
    second claimer waits and then sees the first one's running job. Commits.
    """
    spec_id = db.session.scalar(select(BuildJob.spec_id).where(BuildJob.id == job_id))
    if spec_id is None:
        return False
    if db.session.get_bind().dialect.name != "sqlite":
        db.session.execute(select(ImageSpec.id).where(ImageSpec.id == spec_id).with_for_update())
    other = aliased(BuildJob)
    now = utcnow()
    claimed = db.session.execute(
        update(BuildJob)
        .where(
            BuildJob.id == job_id,
            BuildJob.status == JobStatus.QUEUED,
            BuildJob.cancel_requested.is_(False),
            ~exists().where(other.spec_id == spec_id, other.status == JobStatus.RUNNING),
        )
        .values(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, worker=worker)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return bool(claimed)


def requeue_later(job_id: int, seconds: float) -> bool:
    """Put the job back on the queue after a delay (RQ's scheduler, which the worker runs).

    Same RQ job id as enqueue_build, so the reconciler sees it as known while it waits.
    Called by the runner from inside that RQ job's own run, it works: RQ's end-of-run
    save writes the same function and arguments over the schedule, which survives.
    False when Redis is unreachable: the row stays queued for the reconciler.
    """
    try:
        build_queue().enqueue_in(timedelta(seconds=seconds), BUILD_FUNCTION, job_id, **enqueue_options(job_id))
    except RedisError as exc:
        log.warning("job=%s event=requeue_failed error=%s", job_id, kv(exc))
        return False
    log.info("job=%s event=requeued_later delay_s=%s", job_id, seconds)
    return True


def drop_from_redis(job_id: int) -> None:
    """Remove a job that has not started from RQ. Redis errors are only logged: the
    runner's own compare-and-set refuses a job that is no longer queued."""
    queue = build_queue()
    try:
        rq_job = RQJob.fetch(rq_job_id(job_id), connection=queue.connection, serializer=queue.serializer)
        if rq_job.get_status(refresh=False) in _WAITING:
            rq_job.delete()
    except NoSuchJobError:
        return
    except RedisError as exc:
        log.warning("job=%s event=drop_from_redis_failed error=%s", job_id, kv(exc))


def _finish_queued(job_ids: list[int], reason: str) -> list[int]:
    """queued -> cancelled for those of job_ids still queued; returns the ones changed."""
    changed = []
    now = utcnow()
    for job_id in job_ids:
        result = db.session.execute(
            update(BuildJob)
            .where(BuildJob.id == job_id, BuildJob.status == JobStatus.QUEUED)
            .values(status=JobStatus.CANCELLED, finished_at=now, error=reason)
        )
        if result.rowcount:
            changed.append(job_id)
    return changed
