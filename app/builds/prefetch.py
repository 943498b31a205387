"""Fetching the shared layer cache ahead of builds, on every build host.

Podman's remote cache (cache.py) pulls a cached layer when a build reaches its step, so a
second build host's first rebuild of a spec still waits for the pull of each layer it
takes from the cache: measured here, 6.2 s of an 8.5 s pip-only rebuild went to pulling
a 100 MB APT layer (bench/README.md). So each build host fetches those layers before
they are needed: once a spec's revision has been built and activated on one host, every
other host pulls its cache images while it has no build to run, and its next rebuild of
the spec finds them in its own storage. Its log then says "APT layer: from the shared
cache, built on host-a for r4 (already on this host)" (cache.py reads that from the
build's output).

This module owns:
- which cache images a host fetches (``wanted``): the cache keys of the newest
  BUILD_CACHE_PREFETCH_SPECS active revisions that another build host pushed
  (CacheLayer.built_host); a host's own layers are in its storage already;
- one round (``prefetch``): the cache images this host's storage has (one list), then a
  pull of each missing one by its cache tag, with the push credentials; it logs what it
  pulled and how long it took;
- the schedule (``run_prefetch``, from the worker's periodic loop): every
  BUILD_CACHE_PREFETCH_INTERVAL, one worker per build host (a Redis lock named by
  BUILD_HOST_NAME) puts a round on the host's own queue (``<RQ_QUEUE>-host-<name>``),
  which that host's workers take only when the build queue is empty: a round never
  delays a build, and operators see it in the RQ dashboard;
- which fetched images the image pruning keeps (``kept_keys``, app/builds/maintenance.py).

BUILD_CACHE_PREFETCH=false turns it off; with BUILD_CACHE other than ``registry`` there is
no shared cache to fetch from.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from flask import current_app
from redis.exceptions import RedisError
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import select

from ..extensions import db
from ..models import CacheLayer
from ..ops.logging import kv
from .cache import REGISTRY, active_revision_keys, cache_mode, cache_repository
from .podman import END, Podman, RegistryAuth
from .queue import maintenance_job, redis_connection

log = logging.getLogger(__name__)

PREFETCH_FUNCTION = "app.builds.prefetch.prefetch_job"
PULL_TIMEOUT_SECONDS = 1800
_next_run = 0.0


@dataclass
class PrefetchSummary:
    pulled: list[str] = field(default_factory=list)
    present: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def enabled(config) -> bool:
    return cache_mode(config) == REGISTRY and bool(config.get("BUILD_CACHE_PREFETCH"))


def host_slug(name: str | None) -> str:
    """A build host's name as it goes into a queue name and a Redis key."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name or "").strip("-")[:100] or "host"


def host_queue_name(config) -> str:
    return f"{config['RQ_QUEUE']}-host-{host_slug(config.get('BUILD_HOST_NAME'))}"


def host_queue(connection=None) -> Queue:
    """This build host's own queue: work only this host's workers can do."""
    return Queue(host_queue_name(current_app.config), connection=connection or redis_connection(),
                 serializer=JSONSerializer)


# -- what to fetch ----------------------------------------------------------------------


def wanted(host: str, limit: int) -> list[str]:
    """The cache keys this host should hold, newest active revision first, each step in
    build order: those of the newest `limit` active revisions that another host pushed."""
    keys = active_revision_keys(newest=limit)
    if not keys:
        return []
    built_on = dict(db.session.execute(
        select(CacheLayer.cache_key, CacheLayer.built_host).where(CacheLayer.cache_key.in_(keys))
    ).all())
    # A key without its row was pruned from the registry: nothing to pull.
    return [key for key in keys if built_on.get(key) not in (None, host)]


def kept_keys() -> set[str]:
    """The cache tags in this host's storage the image pruning leaves (it removes the
    cache repository's other tags like any name of no spec)."""
    config = current_app.config
    if not enabled(config):
        return set()
    return set(wanted(config.get("BUILD_HOST_NAME") or "", int(config["BUILD_CACHE_PREFETCH_SPECS"])))


def local_keys(podman: Podman, repository: str) -> set[str]:
    """The cache tags of `repository` in this host's storage."""
    prefix = repository + ":"
    found = set()
    for image in podman.client.api.get("/images/json").json() or []:
        for name in image.get("Names") or image.get("RepoTags") or []:
            if name.startswith(prefix):
                found.add(name[len(prefix):])
    return found


# -- one round --------------------------------------------------------------------------


def prefetch(limit: int | None = None) -> PrefetchSummary:
    """Pull the cache images this host lacks (``wanted``). Raises PodmanFailure (or a
    connection error) when this host's Podman cannot be asked; a pull that fails is
    counted in ``errors`` and the round goes on."""
    config = current_app.config
    summary = PrefetchSummary()
    if not enabled(config):
        return summary
    started = time.monotonic()
    host = config.get("BUILD_HOST_NAME") or ""
    repository = cache_repository(config)
    keys = wanted(host, int(config["BUILD_CACHE_PREFETCH_SPECS"] if limit is None else limit))
    db.session.commit()  # end the read transaction while Podman pulls
    if not keys:
        return summary
    auth, tls_verify = _credentials(config, repository)
    podman = Podman(config["PODMAN_URL"])
    try:
        have = local_keys(podman, repository)
        for key in keys:
            if key in have:
                summary.present += 1
                continue
            error = _pull(podman, f"{repository}:{key}", auth, tls_verify)
            if error:
                summary.errors.append(f"{repository}:{key}: {error}")
            else:
                summary.pulled.append(key)
    finally:
        podman.close()
    summary.seconds = time.monotonic() - started
    log.info("event=cache_prefetched host=%s repository=%s pulled=%d present=%d errors=%d seconds=%.1f%s",
             kv(host), kv(repository), len(summary.pulled), summary.present, len(summary.errors), summary.seconds,
             f" first_error={kv(summary.errors[0])}" if summary.errors else "")
    return summary


def _credentials(config, repository: str) -> tuple[RegistryAuth | None, bool | None]:
    """The push credentials, for a cache repository under REGISTRY's host (the runner's
    rule, runner._build_auths); TLS as the builds verify it."""
    from .runner import _registry_of, _same_registry

    own_host = _registry_of(config["REGISTRY"])
    if not _same_registry(_registry_of(repository), own_host):
        return None, None
    auth = None
    if config.get("REGISTRY_USERNAME"):
        auth = RegistryAuth(own_host, config["REGISTRY_USERNAME"], config.get("REGISTRY_PASSWORD") or "")
    return auth, (False if not config["REGISTRY_TLS_VERIFY"] else None)


def _pull(podman: Podman, ref: str, auth: RegistryAuth | None, tls_verify: bool | None) -> str | None:
    """Pull `ref` to its end; Podman's error, if any (a tag pruned meanwhile, say)."""
    deadline = time.monotonic() + PULL_TIMEOUT_SECONDS
    events = podman.pull(ref, auth, tls_verify)
    try:
        error = None
        while time.monotonic() < deadline:
            event = events.get(5)
            if event is END:
                return error
            if isinstance(event, dict) and event.get("error"):
                error = str(event["error"]).strip().splitlines()[0][:300]
        return f"no end of the pull after {PULL_TIMEOUT_SECONDS} s"
    finally:
        events.close()


# -- the schedule -----------------------------------------------------------------------


def prefetch_job() -> None:
    """RQ entry point of a round, on this host's queue; an error is logged and the next
    round tries again."""
    maintenance_job(prefetch, "cache_prefetch_failed")


def run_prefetch(app) -> bool:
    """Once per BUILD_CACHE_PREFETCH_INTERVAL, by one worker of this build host, put a
    round on the host's queue; for the worker's periodic loop (the round itself runs in a
    work horse, never in the loop's thread). Never raises; True when it enqueued one."""
    global _next_run
    now = time.monotonic()
    if now < _next_run or not enabled(app.config):
        return False
    interval = max(int(app.config["BUILD_CACHE_PREFETCH_INTERVAL"]), 1)
    _next_run = now + interval
    with app.app_context():
        config = app.config
        slug = host_slug(config.get("BUILD_HOST_NAME"))
        try:
            connection = redis_connection()
            if not connection.set(f"imagebuilder:{config['RQ_QUEUE']}:prefetch:{slug}", "1", nx=True,
                                  ex=max(interval - 1, 1)):
                return False
            queue = host_queue(connection)
            job_id = f"{config['RQ_QUEUE']}-prefetch-{slug}"
            if job_id in queue.job_ids:  # one still waits behind the builds
                return False
            queue.enqueue(PREFETCH_FUNCTION, job_id=job_id, job_timeout=PULL_TIMEOUT_SECONDS + 300,
                          result_ttl=3600, failure_ttl=24 * 3600)
            return True
        except RedisError as exc:
            log.warning("event=cache_prefetch_not_enqueued error=%s", kv(exc))
            return False
