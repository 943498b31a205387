"""The reconciler: make Redis and the job rows agree again after a fault.

The database row is the truth. Two faults leave them apart:
- a worker killed mid-build stops its heartbeat: its `running` row is failed;
- Redis restarted empty: `queued` rows RQ no longer knows are enqueued again, once.

Safe to run from every worker at once: row changes are compare-and-set updates, and
the Redis scan runs under a short lock with RQ's unique enqueue as a second guard.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timedelta

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from sqlalchemy import case, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..builds.queue import BUILD_FUNCTION, build_queue, enqueue_options, redis_connection, rq_job_id
from ..extensions import db
from ..i18n import stored as said
from ..models import BuildJob, JobStatus, utcnow
from .logging import kv

log = logging.getLogger(__name__)

LOCK_KEY = "imagebuilder:reconcile:{queue}"
LOCK_SECONDS = 30
# A new row is committed before enqueue_build runs: leave it that long to get there.
QUEUED_GRACE = timedelta(seconds=10)
# A job RQ ended without it ever taking its row is enqueued again this many times, then
# failed: a job that cannot even start must not loop forever. Counted in the RQ job's meta.
REQUEUES_META = "imagebuilder_requeues"
MAX_REQUEUES = 1
# A worker handing its job back at shutdown (a deploy) marks its RQ job so: the requeue
# that follows is not a failed start and spends none of that budget.
HANDED_BACK_META = "imagebuilder_handed_back"
# An RQ job that ended moments ago is left to the next pass: the worker that ran it may
# still be doing its own bookkeeping on that id (status, registries), and the job enqueued
# again would carry the same id.
ENDED_GRACE = timedelta(seconds=10)
# RQ states of a job that will still run (or is running) without our help.
_ALIVE = (RQStatus.QUEUED, RQStatus.STARTED, RQStatus.SCHEDULED, RQStatus.DEFERRED)

_RELEASE_LOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def reconcile(now: datetime | None = None, connection: Redis | None = None) -> dict:
    """One pass; returns the job ids it changed: {"worker_lost", "requeued", "never_started"}
    (and "redis_error" when Redis could not be reached)."""
    now = now or utcnow()
    summary = {"worker_lost": fail_lost_jobs(now), "requeued": [], "never_started": []}
    try:
        summary["requeued"], summary["never_started"] = requeue_missing_jobs(now, connection or redis_connection())
    except RedisError as exc:
        summary["redis_error"] = str(exc)
        log.warning("event=reconcile_redis_error error=%s", kv(exc))
    return summary


def fail_lost_jobs(now: datetime) -> list[int]:
    """running rows whose heartbeat stopped -> failed "worker lost" (cancelled instead
    when an admin had asked to cancel it: what they asked for is what happened)."""
    cutoff = now - timedelta(seconds=current_app.config["HEARTBEAT_TIMEOUT"])
    last_sign = func.coalesce(BuildJob.heartbeat_at, BuildJob.started_at, BuildJob.created_at)
    stale = db.session.execute(
        select(BuildJob.id, BuildJob.heartbeat_at, last_sign).where(
            BuildJob.status == JobStatus.RUNNING, last_sign < cutoff
        )
    ).all()
    lost = []
    for job_id, heartbeat_at, seen in stale:
        # The heartbeat value is part of the condition: a beat that lands meanwhile wins.
        same_beat = BuildJob.heartbeat_at.is_(None) if heartbeat_at is None else BuildJob.heartbeat_at == heartbeat_at
        changed = db.session.execute(
            update(BuildJob)
            .where(BuildJob.id == job_id, BuildJob.status == JobStatus.RUNNING, same_beat)
            .values(
                status=case((BuildJob.cancel_requested, JobStatus.CANCELLED), else_=JobStatus.FAILED),
                finished_at=now,
                error=said.WORKER_LOST % {"since": f"{seen:%Y-%m-%d %H:%M:%S}"},
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        if changed:
            lost.append(job_id)
            log.warning("job=%s event=worker_lost last_heartbeat=%s", job_id, seen.isoformat())
    return lost


def requeue_missing_jobs(now: datetime, connection: Redis) -> tuple[list[int], list[int]]:
    """Enqueue, once, each queued row that RQ has no live job for. Returns (requeued,
    never_started): a row whose RQ job already ended again after one such retry is failed."""
    candidates = db.session.scalars(
        select(BuildJob.id)
        .where(BuildJob.status == JobStatus.QUEUED, BuildJob.created_at < now - QUEUED_GRACE)
        .order_by(BuildJob.id)
    ).all()
    if not candidates:
        return [], []
    queue = build_queue(connection)
    lock_key = LOCK_KEY.format(queue=queue.name)
    token = uuid.uuid4().hex
    if not connection.set(lock_key, token, nx=True, ex=LOCK_SECONDS):
        return [], []  # another worker is reconciling right now
    try:
        known = _known_job_ids(queue)
        requeued, never_started = [], []
        for job_id in candidates:
            if rq_job_id(job_id) in known:
                continue
            rq_job = _fetch(queue, job_id)
            if rq_job is not None and rq_job.get_status(refresh=False) in _ALIVE:
                continue
            if rq_job is not None and _ended_lately(rq_job, now):
                continue
            # No hash (Redis lost it), or one in a final state: RQ ran the job and it ended
            # without taking the row (the runner failed before its first step, or it was
            # handed back at a shutdown).
            tries = _tries(rq_job)
            handed_back = rq_job is not None and bool(rq_job.meta.get(HANDED_BACK_META))
            if tries >= MAX_REQUEUES and not handed_back:
                if _fail_never_started(job_id, now, rq_job):
                    never_started.append(job_id)
                continue
            if rq_job is not None:
                rq_job.delete()
            try:
                spent = tries if handed_back else tries + 1
                queue.enqueue(BUILD_FUNCTION, job_id, unique=True, meta={REQUEUES_META: spent}, **enqueue_options(job_id))
            except DuplicateJobError:
                continue  # somebody enqueued it meanwhile: exactly what we wanted
            requeued.append(job_id)
            log.warning("job=%s event=requeued reason=missing_from_redis", job_id)
        return requeued, never_started
    finally:
        connection.eval(_RELEASE_LOCK, 1, lock_key, token)


def _tries(rq_job: RQJob | None) -> int:
    if rq_job is None:
        return 0
    return int(rq_job.meta.get(REQUEUES_META, 0) or 0)


def _ended_lately(rq_job: RQJob, now: datetime) -> bool:
    ended = rq_job.ended_at
    if ended is None:
        return False
    if ended.tzinfo is not None and now.tzinfo is None:
        ended = ended.replace(tzinfo=None)
    elif ended.tzinfo is None and now.tzinfo is not None:
        ended = ended.replace(tzinfo=now.tzinfo)
    return now - ended < ENDED_GRACE


def _known_job_ids(queue) -> set[str]:
    ids = set(queue.get_job_ids())
    ids.update(queue.intermediate_queue.get_job_ids())
    for registry in (queue.started_job_registry, queue.scheduled_job_registry, queue.deferred_job_registry):
        ids.update(registry.get_job_ids(cleanup=False))
    return ids


def _fetch(queue, job_id: int) -> RQJob | None:
    try:
        return RQJob.fetch(rq_job_id(job_id), connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return None


def _fail_never_started(job_id: int, now: datetime, rq_job: RQJob) -> bool:
    rq_status = rq_job.get_status(refresh=False)
    reason = said.NEVER_STARTED % {"rq_status": getattr(rq_status, "value", rq_status)}
    changed = db.session.execute(
        update(BuildJob)
        .where(BuildJob.id == job_id, BuildJob.status == JobStatus.QUEUED)
        .values(status=JobStatus.FAILED, finished_at=now, error=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if changed:
        log.error("job=%s event=never_started rq_status=%s rq_error=%s", job_id,
                  getattr(rq_status, "value", rq_status), kv(_rq_error(rq_job)))
    return bool(changed)


def _rq_error(rq_job: RQJob) -> str:
    """The last line of what RQ recorded for the job's end (for the operator's log)."""
    try:
        result = rq_job.latest_result()
        text = (result.exc_string if result is not None else None) or ""
    except Exception:  # an old or foreign result format: the log line goes out without it
        return "unknown"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "none recorded"


def run_periodically(app, interval: float | None = None, stop: threading.Event | None = None) -> threading.Thread:
    """Start a daemon thread that reconciles every `interval` seconds, stops the builds
    dead workers left in Podman (app/builds/orphans.py) and prunes old jobs every
    PRUNE_INTERVAL. The worker calls this once at start."""
    from ..builds.cache import run_cache_prune
    from ..builds.maintenance import run_maintenance
    from ..builds.orphans import sweep_orphan_builds
    from ..builds.prefetch import run_prefetch
    from .forkguard import no_fork
    from .retention import prune_jobs

    stop = stop or threading.Event()
    interval = interval or app.config["RECONCILE_INTERVAL"]

    def loop():
        connection = Redis.from_url(app.config["REDIS_URL"])
        next_prune = time.monotonic()
        while not stop.is_set():
            with no_fork(), app.app_context():  # a horse forked mid-pass would inherit its locks
                try:
                    summary = reconcile(connection=connection)
                    if any(summary.values()):
                        log.info("event=reconciled %s", " ".join(f"{k}={kv(v)}" for k, v in summary.items()))
                    sweep_orphan_builds(app.config["PODMAN_URL"])  # logs what it stops
                    if time.monotonic() >= next_prune:
                        prune_jobs()
                        next_prune = time.monotonic() + app.config["PRUNE_INTERVAL"]
                    run_maintenance(app)  # image pruning: at most once per IMAGE_PRUNE_INTERVAL
                    run_cache_prune(app)  # the shared cache repository, as often
                    run_prefetch(app)  # this host's copy of other hosts' cached layers
                except (SQLAlchemyError, RedisError, OSError) as exc:
                    db.session.rollback()
                    log.warning("event=reconcile_failed error=%s", kv(exc))
                finally:
                    db.session.remove()
            stop.wait(interval)

    thread = threading.Thread(target=loop, name="reconciler", daemon=True)
    thread.start()
    return thread
