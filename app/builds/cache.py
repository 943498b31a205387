"""The layer cache shared by every build host through the registry.

A build sends Podman its own remote layer cache settings (buildah's ``--cache-to`` and
``--cache-from``): each step Podman builds or finds in its local cache it pushes to the
cache repository (BUILD_CACHE_REPO) under a tag that is its cache key, and before building
a step it looks that key up there. So a rebuild on any host reuses the layers any host
built for the same base and the same Containerfile prefix. Measured on Podman 4.3.1 with
two rootless users' separate storages: the second host pulls the APT layer and builds only
the pip step (bench/README.md).

This module owns:
- what to send Podman's ``/build`` (``cache_params``): one repository string on Podman
  4.2-4.3, a JSON list from 4.4, nothing older; ``BUILD_CACHE=local`` sends no remote
  cache, ``off`` no layer cache at all. On 4.3 an ``ARG`` before a ``RUN`` stops remote
  cache hits (containers/buildah#4315), so the renderer (app/specs/containerfile.py)
  writes none. A ``RUN --mount=type=secret`` step (the pip step when an index URL has
  credentials, pip_secret.py) gets a cache key like any RUN and is pushed and pulled
  (measured on 4.3.1); the secret's content is not in the key;
- reading the build's output for the cache (``CacheLines``, ``SharedCache.watch``): which
  steps came from the shared cache ("APT layer: from the shared cache, built on host-a
  for r4", with "(already on this host)" for a layer found in local storage under its
  cache tag: fetched ahead by prefetch.py, or pulled by an earlier build), which were
  pushed; the job's ``cache_layers`` and the ``CacheLayer`` rows;
- a refused cache push (registry full, 403): Podman 4.3 fails the whole build then, so the
  build runs again without pushing (its layers are in local storage by now) and the log
  gets a warning line; the cache never fails a job;
- nothing secret in the cache: the CA bundle is public data, registry credentials reach
  Podman only in headers, pip index URLs with credentials only as a build secret outside
  the context this module sees (pip_secret.py; the Containerfile names them masked, and
  the pip step's layer holds what pip installed, not the secret); a build whose context
  still holds a credential (one the log redacts, or a URL with a user name and an
  unmasked password, e.g. in a pip line) pushes nothing to the cache;
- pruning the cache repository through the registry API (``prune_cache``, on the workers'
  schedule): tags no build pushed or pulled for BUILD_CACHE_KEEP_DAYS are deleted, never
  one a spec's active revision was built from. The registry's garbage collection then
  frees the blobs (README, "Scale-out").
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import click
from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import BuildJob, CacheLayer, ImageSpec, utcnow
from ..ops.logging import kv
from .queue import build_queue, maintenance_job, redis_connection
from .registry import ImageRef, RegistryError

log = logging.getLogger(__name__)

REGISTRY, LOCAL, OFF = "registry", "local", "off"
MODES = (REGISTRY, LOCAL, OFF)
PRUNE_LOCK_KEY = "imagebuilder:prune-cache:{repo}"

_STEP_RE = re.compile(r"^STEP \d+/\d+: (.*)$")
_PUSHED_RE = re.compile(r"^--> Pushing cache (\S+):([0-9a-f]{64})$")
_PULLED_RE = re.compile(r"^--> Cache pulled from remote (\S+):([0-9a-f]{64})$")
_LOCAL_RE = re.compile(r"^--> Using cache [0-9a-f]{64}$")
# What Podman 4.3 fails a build with when a cache push is refused.
_PUSH_FAILED = "failed pushing cache to"
# A URL carrying a user name and password (https://user:token@mirror/simple); not one
# whose password is masked (https://user:***@mirror/simple, pip_secret.mask).
_URL_CREDENTIAL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s@'\"]+:(?!\*\*\*@)[^/\s@'\"]*@")


# -- what to send Podman (pure) ---------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...]:
    """``4.3.1`` -> (4, 3, 1); ``4.4.0-rc1`` -> (4, 4, 0); nonsense -> ()."""
    numbers = re.match(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text or "")
    return tuple(int(n) for n in numbers.groups() if n is not None) if numbers else ()


def cache_params(mode: str, podman_version: str, repository: str, push: bool = True) -> dict:
    """The ``/build`` parameters for the cache: Podman 4.2-4.3 take ONE repository name
    for cachefrom/cacheto, 4.4 and later a JSON list; older ones have no remote cache."""
    if mode == OFF:
        return {"layers": False}
    version = parse_version(podman_version)
    if mode != REGISTRY or version < (4, 2):
        return {}
    value = json.dumps([repository]) if version >= (4, 4) else repository
    params = {"cachefrom": value}
    if push:
        params["cacheto"] = value
    return params


def layer_name(instruction: str) -> str:
    """What a Containerfile step is, for the log: ``RUN ... apt-get install`` -> APT layer."""
    keyword = instruction.split(None, 1)[0].upper() if instruction.strip() else "?"
    if keyword == "COPY" and "imagebuilder-ca-bundle.pem" in instruction:
        return "CA bundle layer"
    if keyword == "RUN":
        if "apt-get install" in instruction:
            return "APT layer"
        if "micromamba" in instruction and '"$tool" install' in instruction:
            return "Conda layer"
        if "pip install" in instruction:
            return "pip layer"
    return f"{keyword} step"


def credential_in(context_text: str, redact) -> str | None:
    """Why this build context must not reach the shared cache, or None: it holds a secret
    the log redacts, or a URL with a password in it."""
    if redact(context_text) != context_text:
        return "the build carries a credential"
    if _URL_CREDENTIAL_RE.search(context_text):
        return "a URL in the Containerfile carries a user name and password"
    return None


@dataclass
class CacheStep:
    """One step of a build as the cache saw it."""

    layer: str
    key: str | None = None
    source: str = "built"  # shared | local | built

    def as_dict(self) -> dict:
        return {"layer": self.layer, "key": self.key, "source": self.source}


class CacheLines:
    """Reads a build's output, line by line, for what the cache did at each step.

    ``feed(text)`` takes output in any chunks and returns the steps that just got their
    cache key: pulled from the shared cache (source "shared"), or pushed to it after
    being found in the local cache ("local") or built ("built")."""

    def __init__(self, repository: str):
        self.repository = repository
        self.steps: list[CacheStep] = []
        self._unfinished = ""

    def feed(self, text: str) -> list[CacheStep]:
        complete, _, self._unfinished = (self._unfinished + text).rpartition("\n")
        return [step for line in complete.splitlines() if (step := self._line(line.strip()))]

    def _line(self, line: str) -> CacheStep | None:
        step_match = _STEP_RE.match(line)
        if step_match:
            self.steps.append(CacheStep(layer_name(step_match.group(1))))
            return None
        if not self.steps:
            return None
        current = self.steps[-1]
        if _LOCAL_RE.match(line):
            if current.source != "shared":
                current.source = "local"
            return None
        for pattern, source in ((_PULLED_RE, "shared"), (_PUSHED_RE, None)):
            found = pattern.match(line)
            if found and found.group(1) == self.repository and current.key is None:
                current.key = found.group(2)
                if source:
                    current.source = source
                return current
        return None


def stale_tags(tags: list[str], last_used: dict[str, datetime], protected: set[str],
               cutoff: datetime) -> list[str]:
    """The cache tags to delete: not used since `cutoff` (or unknown to the catalogue),
    and none a spec's active revision was built from."""
    return sorted(tag for tag in tags if tag not in protected and (last_used.get(tag) or cutoff) <= cutoff)


# -- one build --------------------------------------------------------------------------


def cache_mode(config) -> str:
    """BUILD_CACHE: registry, local or off (anything else reads as the default, registry)."""
    mode = (config.get("BUILD_CACHE") or REGISTRY).strip().lower()
    return mode if mode in MODES else REGISTRY


def cache_repository(config) -> str:
    return config.get("BUILD_CACHE_REPO") or f"{config['REGISTRY']}/imagebuilder-cache"


class SharedCache:
    """One build's use of the shared cache: the runner asks it for Podman's parameters,
    lets it watch the build's output, and asks it whether a failed build only failed to
    push to the cache (then it builds again, with nothing pushed)."""

    def __init__(self, config, podman_version: str, job_id: int, logw, context: bytes, podman=None):
        self.mode = cache_mode(config)
        self.podman = podman
        self.repository = cache_repository(config)
        self.host = config.get("BUILD_HOST_NAME") or "?"
        self.job_id = job_id
        self.logw = logw
        self.version = podman_version
        self.push = True
        self.lines = CacheLines(self.repository)
        self._pending: list[dict] = []
        job = db.session.get(BuildJob, job_id)
        self.spec_name, self.revision = job.spec.name, job.revision
        db.session.commit()
        if self.mode == REGISTRY:
            reason = credential_in(context.decode("utf-8", "replace"), logw.redact)
            if reason:
                self.push = False
                logw.line(f"Warning: {reason}: nothing of this build is pushed to the shared cache.")
            if parse_version(podman_version) < (4, 2):
                logw.line(f"Podman {podman_version} on this build host has no remote layer cache: "
                          "only its own layers are reused.")

    @classmethod
    def for_build(cls, config, podman, job_id: int, logw, context: bytes) -> "SharedCache":
        return cls(config, podman.version() if cache_mode(config) == REGISTRY else "", job_id, logw, context,
                   podman)

    def build_params(self) -> dict:
        return cache_params(self.mode, self.version, self.repository, push=self.push)

    def uses_registry(self) -> bool:
        """Whether this build looks layers up in (and pushes them to) the cache repository:
        its request then needs the registry's credentials."""
        return "cachefrom" in self.build_params()

    def watch(self, events) -> "_WatchedEvents":
        return _WatchedEvents(events, self)

    def push_refused(self, error: str | None) -> bool:
        """True once when the build failed only because the registry refused a cache
        push: the next build_params push nothing, and the log says so."""
        if not error or not self.push or _PUSH_FAILED not in error:
            return False
        self.push = False
        detail = ": ".join(error.strip().split(": ")[-2:])  # the registry's own words
        self.logw.line(f"Warning: the registry refused the shared cache's push to {self.repository} ({detail}). "
                       "The build goes on without pushing to the cache; the image is not affected.")
        self.lines = CacheLines(self.repository)
        return True

    def record(self) -> None:
        """The job's cache_layers and a summary line ("2 layers from the shared cache")."""
        steps = [s for s in self.lines.steps if s.key or s.source != "built"]
        if self.mode != REGISTRY or not steps:
            return
        shared = sum(1 for s in steps if s.source == "shared")
        pushed = sum(1 for s in steps if s.source != "shared" and s.key)
        self.logw.line(f"Shared cache: {shared} layer(s) from the shared cache, {pushed} pushed to {self.repository}.")
        job = db.session.get(BuildJob, self.job_id)
        job.cache_layers = [s.as_dict() for s in steps]
        db.session.commit()

    # The output, as it arrives (on the runner's thread, between its log writes).
    def _saw(self, text: str) -> None:
        for step in self.lines.feed(text):
            if step.source == "shared":
                self._pending.append({"stream": self._describe(step) + "\n"})
                self._touch(step)
            elif step.source == "local" and self._pulled_here(step):
                step.source = "shared"
                self._pending.append({"stream": self._describe(step) + " (already on this host)\n"})
                self._touch(step)
            else:
                self._remember(step)

    def _pulled_here(self, step: CacheStep) -> bool:
        """Whether a layer Podman found in local storage came from the shared cache: one
        fetched ahead (prefetch.py) or pulled by an earlier build here carries its cache
        tag in local storage; one this host built does not (a push tags nothing)."""
        if self.podman is None or not step.key:
            return False
        try:
            return self.podman.inspect_image(f"{self.repository}:{step.key}") is not None
        except Exception:
            log.warning("job=%s could not look for a cache tag", self.job_id, exc_info=True)
            return False

    def _describe(self, step: CacheStep) -> str:
        row = db.session.scalar(select(CacheLayer).where(CacheLayer.cache_key == step.key))
        if row is None:
            return f"{step.layer}: from the shared cache"
        target = f"r{row.revision}" if row.spec_name == self.spec_name else f"{row.spec_name} r{row.revision}"
        return f"{step.layer}: from the shared cache, built on {row.built_host} for {target}"

    def _touch(self, step: CacheStep) -> None:
        try:
            row = db.session.scalar(select(CacheLayer).where(CacheLayer.cache_key == step.key))
            if row is not None:
                row.last_used_at = utcnow()
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.warning("job=%s could not note a cache hit", self.job_id, exc_info=True)

    def _remember(self, step: CacheStep) -> None:
        """A pushed tag gets its row before Podman finishes the push: pruning never finds
        a fresh tag unknown."""
        try:
            row = db.session.scalar(select(CacheLayer).where(CacheLayer.cache_key == step.key))
            if row is None:
                db.session.add(CacheLayer(cache_key=step.key, layer=step.layer, built_host=self.host,
                                          spec_name=self.spec_name, revision=self.revision))
            else:
                row.last_used_at = utcnow()
            db.session.commit()
        except IntegrityError:  # another host pushed the same layer at the same moment
            db.session.rollback()
        except Exception:
            db.session.rollback()
            log.warning("job=%s could not record a cache push", self.job_id, exc_info=True)


class _WatchedEvents:
    """A Podman event stream the cache reads along; lines it adds come after the output
    that caused them. Everything else (close, broken, last_layer) is the stream's own."""

    def __init__(self, events, cache: SharedCache):
        self._events = events
        self._cache = cache

    def get(self, timeout: float):
        if self._cache._pending:
            return self._cache._pending.pop(0)
        event = self._events.get(timeout)
        if isinstance(event, dict) and event.get("stream"):
            self._cache._saw(event["stream"])
        return event

    def __getattr__(self, name):
        return getattr(self._events, name)


# -- pruning the cache repository -------------------------------------------------------


@dataclass
class CachePruneSummary:
    deleted: list[str] = field(default_factory=list)
    kept: int = 0
    protected: int = 0
    errors: list[str] = field(default_factory=list)


def active_revision_keys(newest: int | None = None) -> list[str]:
    """Cache keys of the layers the specs' active revisions were built from, once each: the
    newest revision's first, each revision's steps in build order; with ``newest``, only
    those of the newest that many (the pruning keeps all of them; prefetch.py fetches
    the newest)."""
    query = (
        select(BuildJob.cache_layers)
        .join(ImageSpec, and_(ImageSpec.id == BuildJob.spec_id, ImageSpec.active_revision == BuildJob.revision))
        .where(BuildJob.cache_layers.is_not(None))
        .order_by(BuildJob.finished_at.desc(), BuildJob.id.desc())
    )
    if newest is not None:
        query = query.limit(max(newest, 0))
    rows = db.session.scalars(query).all()
    return list(dict.fromkeys(layer["key"] for layers in rows for layer in layers or () if layer.get("key")))


def prune_cache(keep_days: float | None = None, now: datetime | None = None) -> CachePruneSummary:
    """Delete the cache repository's tags unused for `keep_days` (BUILD_CACHE_KEEP_DAYS),
    keeping every layer of an active revision's image. A tag whose manifest an active
    layer shares stays too: deleting by digest would take both. RegistryError when the
    registry cannot be listed."""
    from .maintenance import registry_client

    config = current_app.config
    keep_days = config["BUILD_CACHE_KEEP_DAYS"] if keep_days is None else keep_days
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    ref = ImageRef.parse(cache_repository(config) + ":latest")
    client = registry_client(ref.host)
    summary = CachePruneSummary()
    tags = client.tags(ref.repository)
    last_used = dict(db.session.execute(select(CacheLayer.cache_key, CacheLayer.last_used_at)).all())
    protected = set(active_revision_keys()) & set(tags)
    stale = stale_tags(tags, last_used, protected, cutoff)
    db.session.commit()  # end the read transaction while the registry is asked
    protected_digests = {m.digest for key in protected if (m := client.manifest(ref.repository, key))}
    summary.protected = len(protected)
    summary.kept = len(tags) - len(stale)
    for tag in stale:
        try:
            manifest = client.manifest(ref.repository, tag)
            if manifest is not None and manifest.digest in protected_digests:
                summary.kept += 1
                continue
            client.delete_tag(ref.repository, tag)
            summary.deleted.append(tag)
        except RegistryError as exc:
            summary.errors.append(f"{ref.repository}:{tag}: {exc}")
    if summary.deleted:
        db.session.execute(CacheLayer.__table__.delete().where(CacheLayer.cache_key.in_(summary.deleted)))
        db.session.commit()
    log.info("event=cache_pruned repository=%s deleted=%d kept=%d protected=%d errors=%d",
             kv(ref.repository), len(summary.deleted), summary.kept, summary.protected, len(summary.errors))
    return summary


PRUNE_FUNCTION = "app.builds.cache.prune_cache_job"
_next_run = 0.0


def run_cache_prune(app) -> bool:
    """Once per IMAGE_PRUNE_INTERVAL, by one worker of all the build hosts (a Redis lock
    per repository), put a prune of the cache repository on the build queue; for the
    worker's periodic loop. A work horse runs it: asked from the loop's thread, the
    registry's TLS set-up could hold a lock just when RQ forks a build's horse, which
    would then wait on it forever. Never raises; True when it enqueued one."""
    global _next_run
    now = time.monotonic()
    if now < _next_run or cache_mode(app.config) != REGISTRY:
        return False
    interval = int(app.config["IMAGE_PRUNE_INTERVAL"])
    _next_run = now + interval
    with app.app_context():
        try:
            if not redis_connection().set(PRUNE_LOCK_KEY.format(repo=cache_repository(app.config)), "1",
                                          nx=True, ex=max(interval - 1, 1)):
                return False
            build_queue().enqueue(PRUNE_FUNCTION, job_id=f"{app.config['RQ_QUEUE']}-prune-cache",
                                  job_timeout=600, result_ttl=3600, failure_ttl=24 * 3600)
            return True
        except RedisError as exc:
            log.warning("event=cache_prune_not_enqueued error=%s", kv(exc))
            return False


def prune_cache_job() -> None:
    """RQ entry point of the scheduled prune; a registry that does not answer is logged
    and asked again next interval."""
    maintenance_job(prune_cache, "cache_prune_failed")


def register_cli(app):
    @app.cli.command("prune-cache")
    @click.option("--keep-days", type=float, default=None,
                  help="Tags used more recently stay (BUILD_CACHE_KEEP_DAYS).")
    def prune_cache_command(keep_days):
        """Delete the shared layer cache's tags no build used for a while (registry API)."""
        summary = prune_cache(keep_days=keep_days)
        for tag in summary.deleted:
            click.echo(f"deleted {tag}")
        for error in summary.errors:
            click.echo(f"error: {error}")
        click.echo(f"kept {summary.kept} tag(s), {summary.protected} of them for active revisions")
