"""Putting build jobs on the RQ queue (the queue carries only the job id), and the body
every scheduled maintenance job on the queues shares (``maintenance_job``)."""
import logging
import threading

from flask import current_app, has_app_context
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.serializers import JSONSerializer

log = logging.getLogger(__name__)

BUILD_FUNCTION = "app.builds.runner.run_build"


_clients: dict[str, Redis] = {}
_clients_lock = threading.Lock()


def redis_connection(url=None) -> Redis:
    """The process's Redis client for ``url`` (default REDIS_URL): one connection pool per
    URL and process, so a request reuses a connection instead of opening one (redis-py's
    pool is thread-safe and starts afresh in a forked child)."""
    url = url or current_app.config["REDIS_URL"]
    client = _clients.get(url)
    if client is None:
        with _clients_lock:
            client = _clients.setdefault(url, Redis.from_url(url))
    return client


def build_queue(connection=None) -> Queue:
    return Queue(
        current_app.config["RQ_QUEUE"],
        connection=connection or redis_connection(),
        serializer=JSONSerializer,
    )


def rq_job_id(job_id: int) -> str:
    """RQ's job id for a build job. Prefixed with the queue name: RQ job keys are
    global in a Redis database, and two installs (or test runs) sharing one Redis
    each count their job ids from 1."""
    return f"{current_app.config['RQ_QUEUE']}-build-{job_id}"


def enqueue_options(job_id: int) -> dict:
    """The RQ options of a build job, the same for every way it is (re-)enqueued."""
    return {
        "job_id": rq_job_id(job_id),
        "job_timeout": current_app.config["BUILD_TIMEOUT"] + 300,  # above the build's own timeout
        "result_ttl": 24 * 3600,
        "failure_ttl": 7 * 24 * 3600,
    }


def enqueue_build(job_id: int) -> bool:
    """Enqueue a committed job row. False when Redis is unreachable: the row stays
    `queued` and the worker's reconciler enqueues it once Redis is back."""
    try:
        build_queue().enqueue(BUILD_FUNCTION, job_id, **enqueue_options(job_id))
    except RedisError as exc:
        log.warning("job=%s enqueue failed, left queued for the reconciler: %s", job_id, exc)
        return False
    log.info("job=%s enqueued", job_id)
    return True


def maintenance_job(work, failed_event: str) -> None:
    """Run `work` as the body of a scheduled RQ job that is not a build (the cache's
    pruning, fetching it ahead): in the app's context, leaving the worker's pooled
    connections to the worker. An error is logged as `failed_event`; the next scheduled
    run tries again."""
    from ..extensions import db
    from ..ops.logging import kv

    if not has_app_context():
        from .. import create_app

        with create_app().app_context():
            return maintenance_job(work, failed_event)
    db.engine.dispose(close=False)  # the worker's pooled connections stay the worker's
    try:
        work()
    except Exception as exc:
        db.session.rollback()
        log.warning("event=%s error=%s", failed_event, kv(f"{type(exc).__name__}: {exc}"))
    finally:
        db.session.remove()
