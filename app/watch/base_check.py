"""The base-image watch: has a spec's base tag moved since its active revision was built?

A check resolves the spec's base reference (qualified as the builds qualify it) to the
digest it points at now, with a HEAD request to its registry and the spec's pull secret
(or the push credentials for another spec's image), and compares it with the base digest the
runner recorded for the active revision. Then, by the spec's base policy: ``rebuild`` starts
one job (trigger ``base-changed``, detail ``old -> new``) unless a job is queued or running
or a newer revision already succeeded on the new base (it is being activated), ``notify`` sets
``base_update_digest`` (the badge; the next build clears it), ``off`` does nothing.

Not checked: a base given by digest (it never moves) and a ``localhost/`` base (it is no
registry's image: each build host has its own copy, imported by an admin, so there is no
one place to ask). A registry error is stored on the spec (``base_check_error``, shown on
its page) and logged; it never starts or fails a build.

Workers run a round every BASE_CHECK_INTERVAL (jittered), one worker per round (a Redis
lock that outlives the round by the interval), each spec under a lock of its own so a
"Check base now" and a round never check one spec at once. A round asks once per distinct
(reference, credential), with at most BASE_CHECK_HOST_CONCURRENCY requests in flight and
BASE_CHECK_HOST_RATE requests a second per registry host.
"""
from __future__ import annotations

import logging
import platform
import random
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import current_app
from flask_babel import gettext as _
from redis.exceptions import RedisError
from sqlalchemy import select

from ..builds.queue import redis_connection
from ..builds.registry import ImageRef, Platform, RegistryClient, RegistryError, ResolvedDigest
from ..builds.runner import DOCKER_HUB_ALIASES, _registry_of, _same_registry, qualified_reference
from ..credentials.service import credential_password
from .. import notify
from ..extensions import db
from ..i18n import stored as said
from ..models import BasePolicy, BuildJob, ImageSpec, JobStatus, Trigger, utcnow
from ..ops.forkguard import no_fork
from ..ops.logging import kv
from ..revisions.active import active_job
from ..specs.service import JobTrigger, rebuild_spec

log = logging.getLogger(__name__)

DOCKER_HUB_API_HOST = "registry-1.docker.io"
SPEC_LOCK_SECONDS = 120
ROUND_TICK_SECONDS = 60
REQUEST_TIMEOUT_SECONDS = 15
_RELEASE_LOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_GO_ARCHITECTURES = {
    "x86_64": ("amd64", None), "amd64": ("amd64", None), "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "ppc64le": ("ppc64le", None), "s390x": ("s390x", None),
    "i686": ("386", None), "i386": ("386", None), "riscv64": ("riscv64", None),
}


class CheckBusy(Exception):
    """Another check of this spec is in flight."""


@dataclass(frozen=True)
class NotWatched:
    """Why a base is not asked for: given by digest (``digest`` is it) or local."""

    reason: str
    digest: str | None = None


@dataclass
class CheckResult:
    current_digest: str | None
    built_from: str | None
    moved: bool
    job: BuildJob | None = None
    error: str | None = None
    note: str | None = None


@dataclass
class RoundSummary:
    specs: int = 0
    references: int = 0
    requests: int = 0
    moved: list[str] = field(default_factory=list)
    jobs: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)


# -- pure parts -------------------------------------------------------------------------


def build_platform(machine: str | None = None, system: str = "linux") -> Platform:
    """The build host's platform in an index's terms (Go's GOARCH names)."""
    machine = (machine or platform.machine()).lower()
    architecture, variant = _GO_ARCHITECTURES.get(machine, (machine, None))
    return Platform(system, architecture, variant)


def watch_target(base_image: str) -> ImageRef | NotWatched:
    """Where a base's tag is asked for: the registry's API host, repository and tag."""
    if "@" in base_image:
        return NotWatched(_("The base is given by digest, so it never moves."), base_image.rpartition("@")[2])
    if base_image.startswith("localhost/"):
        return NotWatched(_("A localhost/ base is the build host's own image, not a registry's: it is not checked."))
    qualified = qualified_reference(base_image)
    if ":" not in qualified.rsplit("/", 1)[-1]:
        qualified += ":latest"
    ref = ImageRef.parse(qualified)
    if ref.host in DOCKER_HUB_ALIASES:
        ref = ImageRef(DOCKER_HUB_API_HOST, ref.repository, ref.tag)
    return ref


def compare(resolved: ResolvedDigest, built_from: str | None) -> tuple[str, bool]:
    """(the digest a build would take now, whether it differs from `built_from`). Podman
    may record an index's digest or its platform image's; either counts as unchanged.
    Without a recorded base digest nothing can have moved."""
    current = resolved.platform_digest or resolved.digest
    return current, bool(built_from) and built_from not in resolved.digests


# -- asking registries ------------------------------------------------------------------


def tag_digest(base_image: str, username: str | None, password: str | None, tls_verify: bool) -> str | None:
    """The digest `base_image`'s tag points at now (the runner's question right after it
    pulled), None when it is not a registry tag or the registry cannot be asked."""
    target = watch_target(base_image)
    if isinstance(target, NotWatched):
        return None
    client = RegistryClient(target.host, username, password, tls_verify=tls_verify, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        resolved = client.resolve(target.repository, target.tag, build_platform())
    except RegistryError:
        return None
    return resolved.digest if resolved else None


class HostLimiter:
    """Per registry host: at most `concurrency` requests at once, `rate` a second."""

    def __init__(self, concurrency: int, rate: float):
        self._concurrency = max(concurrency, 1)
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, host: str):
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self._concurrency))
        with semaphore:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next[host])
                self._next[host] = start + self._interval
            if start > now:
                time.sleep(start - now)
            yield


def _limiter() -> HostLimiter:
    config = current_app.config
    return HostLimiter(int(config["BASE_CHECK_HOST_CONCURRENCY"]), float(config["BASE_CHECK_HOST_RATE"]))


def _credentials_for(spec: ImageSpec, host: str) -> tuple[int | None, str | None, str | None]:
    """(credential key, username, password) to ask `host` with: the spec's pull secret when
    it is for that host, the push credentials for another spec's image (under REGISTRY, as
    the builds pull it), else anonymous."""
    cred = spec.pull_secret
    if cred is not None and _same_registry(cred.registry_host, host):
        return cred.id, cred.username, credential_password(cred)
    config = current_app.config
    if spec.base_image.startswith(config["REGISTRY"] + "/") and config.get("REGISTRY_USERNAME"):
        return 0, config["REGISTRY_USERNAME"], config.get("REGISTRY_PASSWORD")
    return None, None, None


def _client(host: str, username: str | None, password: str | None) -> RegistryClient:
    config = current_app.config
    tls_verify = not (host == _registry_of(config["REGISTRY"]) and not config["REGISTRY_TLS_VERIFY"])
    return RegistryClient(host, username, password, tls_verify=tls_verify, timeout=REQUEST_TIMEOUT_SECONDS)


def _resolve_all(asks: dict[tuple, tuple[ImageRef, RegistryClient]], limiter: HostLimiter) -> dict:
    """Each distinct ask once, in parallel within the host limits: key -> ResolvedDigest,
    or an error message."""
    resolution_platform = build_platform()

    def ask(item):
        key, (ref, client) = item
        with limiter.slot(ref.host):
            try:
                resolved = client.resolve(ref.repository, ref.tag, resolution_platform)
            except RegistryError as exc:
                return key, str(exc)
        if resolved is None:
            return key, said.REGISTRY_HAS_NO_TAG % {"host": ref.host, "repository": ref.repository, "tag": ref.tag}
        return key, resolved

    if not asks:
        return {}
    workers = min(len(asks), 16)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="base-check") as pool:
        return dict(pool.map(ask, asks.items()))


# -- one spec's outcome -----------------------------------------------------------------


def _settle(spec: ImageSpec, outcome, user: str | None) -> CheckResult:
    """Store what a check found and act on it per the spec's policy; commits."""
    spec.base_checked_at = utcnow()
    built = active_job(spec)
    built_from = built.base_digest if built else None
    if isinstance(outcome, str):
        spec.base_check_error = outcome[:1000]
        db.session.commit()
        log.warning("spec=%s event=base_check_failed error=%s", spec.name, kv(outcome))
        return CheckResult(None, built_from, False, error=outcome)
    spec.base_check_error = None
    current, moved = compare(outcome, built_from)
    job = None
    if not moved:
        spec.base_update_digest = None
    elif spec.base_policy == BasePolicy.NOTIFY:
        spec.base_update_digest = current
    elif spec.base_policy == BasePolicy.REBUILD and not _has_active_job(spec) and not _newer_build_took(
        spec, built, outcome
    ):
        job = rebuild_spec(spec, JobTrigger(Trigger.BASE_CHANGED, user, f"{built_from} -> {current}"))
    db.session.commit()
    if job is not None:
        notify.send("base-changed", job.id)
    if moved:
        log.info("spec=%s event=base_moved policy=%s built_from=%s current=%s job=%s", spec.name,
                 spec.base_policy, built_from, current, job.id if job else None)
    return CheckResult(current, built_from, moved, job)


def _newer_build_took(spec: ImageSpec, active: BuildJob | None, resolved: ResolvedDigest) -> bool:
    """A revision newer than the active one succeeded on the current base already: it
    is about to be activated (the runner activates just after the final state), or waits
    for an admin. Another build would give the same image again."""
    newer = db.session.scalars(
        select(BuildJob.base_digest).where(
            BuildJob.spec_id == spec.id,
            BuildJob.status == JobStatus.SUCCEEDED,
            BuildJob.revision > (active.revision if active else 0),
            BuildJob.base_digest.is_not(None),
        )
    ).all()
    return any(digest in resolved.digests for digest in newer)


def _has_active_job(spec: ImageSpec) -> bool:
    """A queued job pulls the base when it starts: it takes the new one already."""
    return db.session.scalar(
        select(BuildJob.id).where(BuildJob.spec_id == spec.id, BuildJob.status.in_(JobStatus.ACTIVE)).limit(1)
    ) is not None


# -- locks ------------------------------------------------------------------------------


def _lock_key(what: str) -> str:
    return f"imagebuilder:{current_app.config['RQ_QUEUE']}:base-check:{what}"


@contextmanager
def _spec_lock(spec: ImageSpec):
    """Held while the spec is checked; raises CheckBusy when another check holds it. With
    Redis unreachable the check goes ahead (the job it might start could not be enqueued
    either; the reconciler enqueues it once Redis is back)."""
    key, token = _lock_key(f"spec:{spec.id}"), uuid.uuid4().hex
    connection = None
    try:
        connection = redis_connection()
        if not connection.set(key, token, nx=True, ex=SPEC_LOCK_SECONDS):
            raise CheckBusy(_("A base check of %(name)s is already running.", name=spec.name))
    except RedisError as exc:
        log.warning("spec=%s event=base_check_lock_unavailable error=%s", spec.name, kv(exc))
        connection = None
    try:
        yield
    finally:
        if connection is not None:
            try:
                connection.eval(_RELEASE_LOCK, 1, key, token)
            except RedisError:
                pass  # it expires


# -- entry points -----------------------------------------------------------------------


def check_spec_base(spec: ImageSpec, user: str | None = None) -> CheckResult:
    """Check one spec now ("Check base now", the API). Raises CheckBusy."""
    target = watch_target(spec.base_image)
    if isinstance(target, NotWatched):
        built = active_job(spec)
        return CheckResult(target.digest, built.base_digest if built else None, False, note=target.reason)
    with _spec_lock(spec):
        key, username, password = _credentials_for(spec, target.host)
        client = _client(target.host, username, password)
        outcome = _resolve_all({(str(target), key): (target, client)}, _limiter())[(str(target), key)]
        return _settle(spec, outcome, user)


def check_round() -> RoundSummary:
    """Check every spec whose policy is not ``off`` and whose base is watched."""
    summary = RoundSummary()
    specs = db.session.scalars(
        select(ImageSpec).where(ImageSpec.base_policy != BasePolicy.OFF).order_by(ImageSpec.id)
    ).all()
    clients: dict[tuple, RegistryClient] = {}
    asks: dict[tuple, tuple[ImageRef, RegistryClient]] = {}
    planned: list[tuple[ImageSpec, tuple]] = []
    for spec in specs:
        target = watch_target(spec.base_image)
        if isinstance(target, NotWatched):
            continue
        key, username, password = _credentials_for(spec, target.host)
        client = clients.setdefault((target.host, key), _client(target.host, username, password))
        ask_key = (str(target), key)
        asks.setdefault(ask_key, (target, client))
        planned.append((spec, ask_key))
    db.session.commit()  # end the read: the requests may take a while
    summary.specs, summary.references = len(planned), len(asks)
    outcomes = _resolve_all(asks, _limiter())
    summary.requests = sum(client.requests_sent for client in clients.values())
    for spec, ask_key in planned:
        try:
            with _spec_lock(spec):
                result = _settle(spec, outcomes[ask_key], None)
        except CheckBusy:
            summary.busy.append(spec.name)
            continue
        if result.error:
            summary.errors.append(spec.name)
        if result.moved:
            summary.moved.append(spec.name)
        if result.job:
            summary.jobs.append(result.job.id)
    return summary


def start_scheduled_checks(app, stop: threading.Event | None = None) -> threading.Thread:
    """The worker's base-watch thread: every ROUND_TICK_SECONDS it tries to take the round
    lock, which lasts a jittered BASE_CHECK_INTERVAL; whoever takes it runs a round. So
    across all workers (and their restarts) one round runs per interval."""
    stop = stop or threading.Event()

    def loop():
        while not stop.wait(min(ROUND_TICK_SECONDS, int(app.config["BASE_CHECK_INTERVAL"]))):
            with no_fork(), app.app_context():  # a horse forked mid-round would inherit its locks
                try:
                    _run_round_if_due(app)
                except Exception as exc:  # the thread must keep going
                    db.session.rollback()
                    log.warning("event=base_check_round_failed error=%s", kv(f"{type(exc).__name__}: {exc}"))
                finally:
                    db.session.remove()

    thread = threading.Thread(target=loop, name="base-watch", daemon=True)
    thread.start()
    return thread


def _run_round_if_due(app) -> RoundSummary | None:
    interval = int(app.config["BASE_CHECK_INTERVAL"])
    lasts = max(int(interval * random.uniform(0.9, 1.1)), 1)
    try:
        if not redis_connection().set(_lock_key("round"), "1", nx=True, ex=lasts):
            return None
    except RedisError as exc:
        log.warning("event=base_check_round_skipped error=%s", kv(exc))
        return None
    started = time.monotonic()
    summary = check_round()
    log.info("event=base_check_round specs=%s references=%s requests=%s moved=%s jobs=%s errors=%s seconds=%.1f",
             summary.specs, summary.references, summary.requests, kv(summary.moved), kv(summary.jobs),
             kv(summary.errors), time.monotonic() - started)
    return summary
