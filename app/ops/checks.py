"""What the health endpoints and the footer strip report."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from podman import PodmanClient
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import func, select, text

from ..builds.queue import build_queue
from ..extensions import db
from ..models import BuildJob, JobStatus


def readiness() -> dict[str, str | None]:
    """Each part the app needs, mapped to None when reachable or to the error."""
    timeout = current_app.config["READINESS_TIMEOUT"]
    return {
        "database": _error_of(_check_database),
        "redis": _error_of(lambda: _check_redis(timeout)),
        "podman": _error_of(lambda: _check_podman(timeout)),
    }


@dataclass
class BuildStatus:
    running: int
    workers: int | None = None
    queued: int | None = None
    redis_error: str | None = None


def build_status() -> BuildStatus:
    """Workers alive on the build queue, jobs waiting in it, builds running now."""
    status = BuildStatus(running=db.session.scalar(select(func.count()).where(BuildJob.status == JobStatus.RUNNING)))
    try:
        queue = build_queue()
        status.workers = Worker.count(queue=queue)
        status.queued = queue.count
    except RedisError as exc:
        status.redis_error = str(exc)
    return status


def _error_of(check) -> str | None:
    try:
        check()
    except Exception as exc:  # noqa: BLE001  any failure means "not ready", and says why
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_database():
    db.session.execute(text("SELECT 1"))


def _check_redis(timeout):
    with Redis.from_url(current_app.config["REDIS_URL"], socket_timeout=timeout, socket_connect_timeout=timeout) as redis:
        redis.ping()


def _check_podman(timeout):
    url = current_app.config["PODMAN_URL"]
    with PodmanClient(base_url=url, timeout=timeout) as client:
        if not client.ping():
            raise ConnectionError(f"Podman at {url} did not answer its ping")
