"""Retention: old jobs, old failed logs and old audit rows are pruned, in bounded batches.

Per spec the newest JOB_RETENTION_COUNT jobs stay with their logs. Never pruned: a
queued or running job, the spec's active revision (its image is the one users take and
the catalogue shows; its manifest rows go only with it), and its latest succeeded job
(waiting for an admin to activate it when new builds are not activated automatically).
Audit rows go after AUDIT_RETENTION_DAYS.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, exists, func, select, update

from .. import audit
from ..extensions import db
from ..models import BuildJob, JobStatus, LogChunk, utcnow
from ..revisions import active as active_revision

log = logging.getLogger(__name__)

BATCH_SIZE = 500


def prune_jobs(keep_last: int | None = None, failed_log_days: int | None = None, now: datetime | None = None,
               audit_days: int | None = None) -> dict:
    """Delete jobs beyond the newest `keep_last` per spec, the log chunks of failed jobs
    that ended more than `failed_log_days` ago, and audit rows older than `audit_days`.
    Returns the counts; commits per batch."""
    config = current_app.config
    keep_last = config["JOB_RETENTION_COUNT"] if keep_last is None else keep_last
    failed_log_days = config["FAILED_LOG_RETENTION_DAYS"] if failed_log_days is None else failed_log_days
    audit_days = config["AUDIT_RETENTION_DAYS"] if audit_days is None else audit_days
    now = now or utcnow()
    summary = {
        "jobs_deleted": _delete_old_jobs(keep_last),
        "failed_logs_deleted": _delete_failed_logs(now - timedelta(days=failed_log_days)),
        "audit_events_deleted": audit.prune(audit_days, now),
    }
    log.info("event=pruned %s", " ".join(f"{k}={v}" for k, v in summary.items()))
    return summary


def _delete_old_jobs(keep_last: int) -> int:
    rank = (
        func.row_number()
        .over(partition_by=BuildJob.spec_id, order_by=BuildJob.revision.desc())
        .label("rank")
    )
    ranked = select(BuildJob.id, BuildJob.spec_id, BuildJob.status, rank).subquery()
    latest_succeeded = (
        select(func.max(BuildJob.id)).where(BuildJob.status == JobStatus.SUCCEEDED).group_by(BuildJob.spec_id)
    )
    expired = (
        select(ranked.c.id)
        .where(
            ranked.c.rank > keep_last,
            ranked.c.status.in_(JobStatus.FINISHED),
            ranked.c.id.not_in(latest_succeeded),
            ranked.c.id.not_in(active_revision.active_job_ids()),
        )
        .order_by(ranked.c.id)
        .limit(BATCH_SIZE)
    )
    deleted = 0
    while ids := db.session.scalars(expired).all():
        _delete_log_chunks(ids)
        # Re-checked in the DELETE itself: a job is never removed while active.
        db.session.execute(
            delete(BuildJob).where(BuildJob.id.in_(ids), BuildJob.status.in_(JobStatus.FINISHED))
        )
        db.session.commit()
        deleted += len(ids)
    return deleted


def _delete_failed_logs(cutoff: datetime) -> int:
    old_failed = select(BuildJob.id).where(
        BuildJob.status == JobStatus.FAILED,
        BuildJob.finished_at < cutoff,
        exists().where(LogChunk.job_id == BuildJob.id),
    )
    jobs = 0
    while ids := db.session.scalars(old_failed.order_by(BuildJob.id).limit(BATCH_SIZE)).all():
        _delete_log_chunks(ids)
        db.session.execute(update(BuildJob).where(BuildJob.id.in_(ids)).values(log_bytes=0))
        db.session.commit()
        jobs += len(ids)
    return jobs


def _delete_log_chunks(job_ids: list[int]) -> None:
    """Chunks first and in batches: one job's log can hold many thousands of rows."""
    chunk_ids = select(LogChunk.id).where(LogChunk.job_id.in_(job_ids)).limit(BATCH_SIZE * 10)
    while ids := db.session.scalars(chunk_ids).all():
        db.session.execute(delete(LogChunk).where(LogChunk.id.in_(ids)))
        db.session.commit()
