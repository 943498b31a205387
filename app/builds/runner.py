"""One build job, from the queue to the registry: the RQ job function ``run_build``.

The job's database row is the truth. ``run_build(job_id)`` moves it ``queued -> running``
with a compare-and-set update (so a job never runs twice and a cancelled one never
starts), then pulls the base image, checks it, builds, verifies the image (its package
manifest, the requested lines, the test command: ``verify.py``), pushes and confirms the
push against the registry, announcing each step in the log. Whatever happens, the row ends
``succeeded``, ``failed`` or ``cancelled`` with an error summary; a succeeded job is then
handed to the active revision (which moves ``latest``).

While the build runs a heartbeat thread stamps ``heartbeat_at`` and watches
``cancel_requested``; the main thread notices a cancel request or the timeout within a
fraction of a second and stops the build in Podman.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass

from flask import current_app, has_app_context
from sqlalchemy import select, update

from ..credentials.service import credential_password
from ..extensions import db
from ..i18n import stored as said
from ..models import BuildJob, JobStatus, RegistryCredential, utcnow
from ..notify import job_finished
from ..revisions.active import after_build_succeeded
from ..specs.containerfile import CA_BUNDLE_CONTEXT_NAME, BuildOptions, render_containerfile
from ..specs.validation import SpecInput, registry_host
from . import livelog
from .cache import SharedCache
from .control import claim_job, requeue_later
from .logs import append_log_chunk
from .logwriter import LogWriter
from .orphans import BuildClaim
from .pip_secret import PipIndexSecret
from .podman import END, Podman, PodmanFailure, RegistryAuth, build_context, pulled_digest, registry_config_header
from .queue import rq_job_id
from .registry import ImageRef, RegistryClient, RegistryError
from .verify import VerificationFailed, verify_image

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
POLL_SECONDS = 0.05  # also how late a held log line may be flushed while someone reads live
FINAL_WRITE_ATTEMPTS = 5
SPEC_BUSY_RETRY_SECONDS = 15
# What the kernel's ENOSPC reads as, in a RUN step's output or in Podman's own error.
_DISK_FULL = "no space left on device"
_ERROR_LINE_RE = re.compile(r"^(?:E|ERROR|error|Error|CRITICAL|critical)(?::| ).*$", re.MULTILINE)
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


class BuildFailed(Exception):
    """The build cannot succeed; the message is the job's error summary."""


class BuildStopped(Exception):
    """The build was stopped on purpose (cancel, timeout); see `status`."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def run_build(job_id: int) -> str | None:
    """RQ entry point (``app.builds.runner.run_build``): build job `job_id`."""
    if has_app_context():
        return _run_in_context(job_id)
    from .. import create_app

    with create_app().app_context():
        return _run_in_context(job_id)


def _run_in_context(job_id: int) -> str | None:
    # RQ forks a work horse per job: connections pooled by the parent must not be shared
    # with it. close=False leaves the parent's connections to the parent.
    db.engine.dispose(close=False)
    try:
        return BuildRun(job_id, current_app.config).run()
    finally:
        db.session.remove()


def worker_name() -> str:
    try:
        from rq import get_current_job

        job = get_current_job()
        if job is not None and job.worker_name:
            return job.worker_name
    except Exception:  # not under RQ
        pass
    return f"{socket.gethostname()}:{os.getpid()}"


# -- the job row ------------------------------------------------------------------------


def claim(job_id: int, worker: str) -> bool:
    """queued -> running (control.claim_job: a compare-and-set that also keeps one running
    job per spec). A job not claimed is left as it should be: a queued job whose cancel
    was asked for ends cancelled, one whose spec is busy is tried again later."""
    if claim_job(job_id, worker):
        return True
    row = db.session.execute(
        select(BuildJob.status, BuildJob.cancel_requested).where(BuildJob.id == job_id)
    ).one_or_none()
    if row is None or row.status != JobStatus.QUEUED:
        return False
    if row.cancel_requested:
        now = utcnow()
        db.session.execute(
            update(BuildJob)
            .where(BuildJob.id == job_id, BuildJob.status == JobStatus.QUEUED)
            .values(status=JobStatus.CANCELLED, error=said.CANCELLED_BEFORE_START, finished_at=now, updated_at=now)
        )
        db.session.commit()
    else:
        log.info("job=%s event=spec_busy retry_in_s=%s", job_id, SPEC_BUSY_RETRY_SECONDS)
        requeue_later(job_id, SPEC_BUSY_RETRY_SECONDS)
    return False


def finish(job_id: int, status: str, error: str | None = None, **fields) -> bool:
    """running -> final state. Retried with a fresh session: the row must not stay running."""
    for attempt in range(1, FINAL_WRITE_ATTEMPTS + 1):
        try:
            now = utcnow()
            result = db.session.execute(
                update(BuildJob)
                .where(BuildJob.id == job_id, BuildJob.status == JobStatus.RUNNING)
                .values(status=status, error=error, finished_at=now, updated_at=now, **fields)
            )
            db.session.commit()
            return result.rowcount == 1
        except Exception:
            log.warning("job=%s final state write failed (attempt %d)", job_id, attempt, exc_info=True)
            try:
                db.session.rollback()
            except Exception:
                pass
            db.session.remove()
            time.sleep(min(2 ** attempt * 0.25, 4))
    log.error("job=%s could not write its final state %s", job_id, status)
    return False


def _db_store(job_id: int, redis):
    def store(text: str, progress: str | None, truncated: bool) -> None:
        try:
            job = db.session.get(BuildJob, job_id)
            if text:
                append_log_chunk(job, text)
            if progress is not None:
                job.progress = progress
            if truncated and not job.log_truncated:
                job.log_truncated = True
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        livelog.announce_chunk(redis, job_id)

    return store


class Heartbeat(threading.Thread):
    """Stamps heartbeat_at every few seconds and sets `cancelled` when a cancel is asked."""

    def __init__(self, app, job_id: int, interval: float | None = None):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self._app = app
        self._job_id = job_id
        self._interval = interval or HEARTBEAT_SECONDS
        self._stopping = threading.Event()
        self.cancelled = threading.Event()

    def run(self):
        with self._app.app_context():
            engine = db.engine
            while not self._stopping.is_set():
                try:
                    with engine.begin() as conn:
                        conn.execute(
                            update(BuildJob)
                            .where(BuildJob.id == self._job_id, BuildJob.status == JobStatus.RUNNING)
                            .values(heartbeat_at=utcnow())
                        )
                        # A row that is gone (its spec deleted) counts as a cancel: nothing
                        # may be pushed for it.
                        requested = conn.scalar(select(BuildJob.cancel_requested).where(BuildJob.id == self._job_id))
                        if requested is not False:
                            self.cancelled.set()
                except Exception:
                    log.warning("job=%s heartbeat failed", self._job_id, exc_info=True)
                self._stopping.wait(self._interval)

    def stop(self):
        self._stopping.set()
        self.join(timeout=self._interval + 5)


# -- the build --------------------------------------------------------------------------


@dataclass
class Outcome:
    image: str
    digest: str
    size_bytes: int


class BuildRun:
    STEPS = 6

    def __init__(self, job_id: int, config):
        self.job_id = job_id
        self.config = config
        self.timeout = int(config["BUILD_TIMEOUT"])
        self.registry_auth = None
        if config.get("REGISTRY_USERNAME"):
            self.registry_auth = RegistryAuth(
                _registry_of(config["REGISTRY"]), config["REGISTRY_USERNAME"], config.get("REGISTRY_PASSWORD") or ""
            )
        redis = livelog.worker_redis(config["REDIS_URL"])
        self.logw = LogWriter(
            _db_store(job_id, redis),
            max_bytes=int(config["LOG_MAX_BYTES"]),
            flush_seconds=float(config["LOG_FLUSH_SECONDS"]),
            watched=livelog.Watched(redis, job_id),
            live_flush_seconds=float(config["LOG_LIVE_FLUSH_SECONDS"]),
            secrets=self.registry_auth.secret_forms() if self.registry_auth else (),
        )
        self.logw.add_secret(config.get("REGISTRY_PASSWORD"))
        self.heartbeat: Heartbeat | None = None
        self.deadline = None
        self.last_error_line: str | None = None  # a package manager's "E: ..." / "ERROR: ..."
        self.disk_full = False  # the output or Podman said "no space left on device"
        self._unfinished_line = ""  # Podman's stream chunks need not end at line ends
        self.pip_secret: PipIndexSecret | None = None

    # The whole job: claim, build, always a final state.
    def run(self) -> str | None:
        worker = worker_name()
        if not claim(self.job_id, worker):
            log.info("job=%s event=not_claimed", self.job_id)
            return None
        log.info("job=%s event=started worker=%s", self.job_id, worker)
        started = time.monotonic()
        self.deadline = started + self.timeout
        self.heartbeat = Heartbeat(current_app._get_current_object(), self.job_id)
        self.heartbeat.start()
        status, error, fields = JobStatus.FAILED, said.ENDED_UNEXPECTEDLY, {}
        try:
            outcome = self.build()
            status, error = JobStatus.SUCCEEDED, None
            fields = {"image": outcome.image, "digest": outcome.digest, "size_bytes": outcome.size_bytes,
                      "progress": None}
            self.logw.step(f"Done: {outcome.image} ({outcome.digest}) in {time.monotonic() - started:.1f} s")
        except BuildStopped as exc:
            status, error = exc.status, str(exc)
            self._log_end(f"{status.capitalize()}: {exc}")
        except (BuildFailed, VerificationFailed, PodmanFailure, RegistryError) as exc:
            error = self.logw.redact(str(exc))
            self._log_end(f"Failed: {error}")
        except BaseException as exc:  # RQ's shutdown and timeout exceptions included
            if type(exc).__name__ == "ShutDownImminentException" and self._hand_back(worker):
                return None
            error = self.logw.redact(_crash_message(exc))
            log.exception("job=%s event=crashed", self.job_id)
            self._log_end(f"Failed: {error}")
            self._finish(status, error, fields)
            raise
        self._finish(status, error, fields)
        if status == JobStatus.SUCCEEDED:
            self._activate()
        return status

    def _activate(self) -> None:
        try:
            after_build_succeeded(self.job_id)
        except Exception:
            db.session.rollback()
            log.warning("job=%s could not update the active revision", self.job_id, exc_info=True)

    def _hand_back(self, worker: str) -> bool:
        """The worker is shutting down (a deploy): the build has been stopped in Podman;
        put the row back to queued for the next worker. The reconciler enqueues it again
        (its RQ job ends here as finished), and the compare-and-set claim keeps it from
        running twice. False when the row is no longer this worker's running job."""
        if self.heartbeat:
            self.heartbeat.stop()
        self._log_end(
            "Handed back: the worker is shutting down (a deploy or restart). The build was "
            "stopped and the job is queued again for the next worker."
        )
        try:
            self.logw.close()
            now = utcnow()
            changed = db.session.execute(
                update(BuildJob)
                .where(BuildJob.id == self.job_id, BuildJob.status == JobStatus.RUNNING, BuildJob.worker == worker)
                .values(status=JobStatus.QUEUED, started_at=None, heartbeat_at=None, worker=None,
                        progress=None, updated_at=now)
            ).rowcount
            db.session.commit()
        except Exception:
            log.warning("job=%s could not hand the job back", self.job_id, exc_info=True)
            db.session.rollback()
            return False
        if changed:
            _reset_requeue_count()
            log.info("job=%s event=handed_back worker=%s", self.job_id, worker)
        return bool(changed)

    def _log_end(self, line: str) -> None:
        try:
            self.logw.step(line)
        except Exception:
            log.warning("job=%s could not log its end", self.job_id, exc_info=True)

    def _finish(self, status, error, fields):
        if self.heartbeat:
            self.heartbeat.stop()
        try:
            self.logw.close()
        except Exception:
            log.warning("job=%s could not store the end of its log", self.job_id, exc_info=True)
            db.session.remove()
        if finish(self.job_id, status, error, **fields):
            log.info("job=%s event=%s%s", self.job_id, status, f" error={error!r}" if error else "")
            job_finished(self.job_id, status)
        else:
            log.warning("job=%s event=final_state_not_written status=%s (the row is no longer running)",
                        self.job_id, status)

    def build(self) -> Outcome:
        job = db.session.get(BuildJob, self.job_id)
        snapshot = dict(job.spec_snapshot)
        spec = SpecInput(
            name=snapshot["name"],
            base_image=snapshot["base_image"],
            pull_secret=snapshot.get("pull_secret"),
            apt=list(snapshot.get("apt") or []),
            pip=list(snapshot.get("pip") or []),
            conda=list(snapshot.get("conda") or []),
            test_command=snapshot.get("test_command") or None,
        )
        target = f"{self.config['REGISTRY']}/{spec.name}:{job.tag}"
        db.session.commit()  # end the read transaction: SQLite writers must not wait on us

        pull_auth = self._pull_auth(spec)
        podman = Podman(self.config["PODMAN_URL"])
        try:
            podman.ping()
            base = self.pull_base(podman, spec, pull_auth)
            base_user = self.preflight(podman, spec, base)
            containerfile, context = self.render(spec, base_user)
            self.store_containerfile(snapshot, containerfile)
            self.build_image(podman, context, target, base, pull_auth)
            verify_image(self, podman, target, spec)
            return self.push(podman, target)
        finally:
            podman.close()

    # Step 1: the base image.
    def _pull_auth(self, spec: SpecInput) -> RegistryAuth | None:
        if not spec.pull_secret:
            # Another spec's image (under REGISTRY) is pulled with the push credentials.
            own = spec.base_image.startswith(self.config["REGISTRY"] + "/")
            return self.registry_auth if own else None
        cred = db.session.scalar(select(RegistryCredential).where(RegistryCredential.name == spec.pull_secret))
        if cred is None:
            raise BuildFailed(said.PULL_SECRET_GONE % {"secret": repr(spec.pull_secret)})
        host = registry_host(spec.base_image)
        if not _same_registry(cred.registry_host, host):
            raise BuildFailed(said.CREDENTIAL_OTHER_REGISTRY % {
                "credential": repr(cred.name), "registry": cred.registry_host, "image": spec.base_image, "host": host,
            })
        auth = RegistryAuth(cred.registry_host, cred.username, credential_password(cred))
        for form in auth.secret_forms():
            self.logw.add_secret(form)
        return auth

    def pull_base(self, podman: Podman, spec: SpecInput, auth: RegistryAuth | None) -> dict:
        base = spec.base_image
        self.announce(1, f"Pulling base image {base}", said.PULLING_BASE)
        if base.startswith("localhost/"):
            self.logw.line(f"{base} is a local image (localhost/): using the build host's copy, never pulled.")
            info = podman.inspect_image(base)
            if info is None:
                raise BuildFailed(said.LOCAL_BASE_MISSING % {"image": base})
        else:
            host = registry_host(base)
            if auth:
                self.logw.line(f"Using credential {spec.pull_secret!r} for {host}.")
            qualified = qualified_reference(base)
            error = self.follow(podman.pull(qualified, auth, self._tls_verify_for(host)))
            if error:
                raise BuildFailed(self._pull_error(spec, host, error))
            info = podman.inspect_image(qualified)
            if info is None:
                raise BuildFailed(said.PULLED_BASE_MISSING % {"image": base})
        digest = pulled_digest(info, qualified_reference(base), self._tag_digest(base, auth))
        self.logw.line(f"Base image {base}: id {info.get('Id', '?')[:12]}, digest {digest or '?'}")
        self._record(base_digest=digest)
        return info

    def _tag_digest(self, base: str, auth: RegistryAuth | None) -> str | None:
        """What the base's tag points at in its registry now (None for a local base, or
        when the registry cannot be asked): which of the image's digests was pulled."""
        if base.startswith("localhost/"):
            return None
        # Imported here: the watch builds on the catalogue's services, which import the runner.
        from ..watch.base_check import tag_digest

        verify = self._tls_verify_for(registry_host(base))
        return tag_digest(base, auth.username if auth else None, auth.password if auth else None, verify is not False)

    def _record(self, **fields) -> None:
        """Facts the build learns on the way (base digest, manifest summary) onto the row."""
        db.session.execute(update(BuildJob).where(BuildJob.id == self.job_id).values(**fields))
        db.session.commit()

    def _pull_error(self, spec: SpecInput, host: str, error: str) -> str:
        lowered = error.lower()
        if any(word in lowered for word in ("unauthorized", "authentication required", "denied", "forbidden", "401", "403")):
            if spec.pull_secret:
                return said.PULL_CREDENTIAL_REFUSED % {"credential": repr(spec.pull_secret), "host": host,
                                                       "image": spec.base_image}
            return said.PULL_NEEDS_CREDENTIAL % {"image": spec.base_image, "host": host}
        if "manifest unknown" in lowered or "not found" in lowered or "name unknown" in lowered:
            return said.BASE_NOT_FOUND % {"image": spec.base_image, "host": host, "error": error}
        return said.PULL_FAILED % {"image": spec.base_image, "error": error}

    def _tls_verify_for(self, host: str) -> bool | None:
        """False only for the operator's registry marked REGISTRY_TLS_VERIFY=false; otherwise
        Podman's registries.conf decides."""
        if host == _registry_of(self.config["REGISTRY"]) and not self.config["REGISTRY_TLS_VERIFY"]:
            return False
        return None

    # Step 2: pre-flight checks.
    def preflight(self, podman: Podman, spec: SpecInput, base: dict) -> str | None:
        self.announce(2, "Pre-flight checks", said.PREFLIGHT)
        base_user = (base.get("Config") or {}).get("User") or None
        if base_user and base_user not in ("root", "0", "0:0"):
            self.logw.line(f"The base image runs as {base_user}; the build installs as root and restores {base_user} at the end.")
        else:
            self.logw.line("The base image runs as root; the build installs as root.")
        if spec.conda:
            tool = podman.find_conda_tool(base.get("Id") or spec.base_image)
            if not tool:
                raise BuildFailed(said.CONDA_TOOL_MISSING % {"image": spec.base_image})
            self.logw.line(f"Conda packages will be installed with {tool}.")
        return base_user

    # Step 3: the Containerfile and the build.
    def render(self, spec: SpecInput, base_user: str | None) -> tuple[str, bytes]:
        ca_path = self.config.get("BUILD_CA_BUNDLE")
        extra = {}
        if ca_path:
            try:
                with open(ca_path, "rb") as fh:
                    extra[CA_BUNDLE_CONTEXT_NAME] = fh.read()
            except OSError as exc:
                raise BuildFailed(said.CA_BUNDLE_UNREADABLE % {"path": ca_path, "reason": exc.strerror}) from None
        pip_index = {
            "pip_index_url": self.config.get("PIP_INDEX_URL"),
            "pip_extra_index_urls": tuple(self.config.get("PIP_EXTRA_INDEX_URLS") or ()),
        }
        # Index URLs with credentials go to the pip step as a build secret (pip_secret.py).
        self.pip_secret = PipIndexSecret.from_config(self.config) if spec.pip else None
        if self.pip_secret:
            pip_index = self.pip_secret.build_options()
            for form in self.pip_secret.secret_forms():
                self.logw.add_secret(form)
        options = BuildOptions(ca_bundle=bool(ca_path), base_user=base_user, **pip_index)
        containerfile = render_containerfile(spec, options)
        return containerfile, build_context(containerfile, extra)

    def store_containerfile(self, snapshot: dict, containerfile: str) -> None:
        """The exact Containerfile built goes into the snapshot as ``containerfile_built``;
        ``containerfile`` stays the preview the tag's hash was computed from."""
        job = db.session.get(BuildJob, self.job_id)
        job.spec_snapshot = {**snapshot, "containerfile_built": containerfile}
        db.session.commit()

    def build_image(self, podman: Podman, context: bytes, target: str, base: dict, auth: RegistryAuth | None):
        self.announce(3, f"Building {target}", said.BUILDING)
        cache = SharedCache.for_build(self.config, podman, self.job_id, self.logw, context)
        handle = podman.start_handle(base.get("Id", ""))
        # Held while the build runs: should this process die, the worker sweep finds the
        # build by its claim and stops it (app/builds/orphans.py).
        claim = BuildClaim.take(self.config["PODMAN_URL"], rq_job_id(self.job_id), handle, target)
        events = None
        auths = self._build_auths(auth, cache)
        try:
            while True:  # twice when the registry refuses a cache push: then without it
                events = cache.watch(self._start_build(podman, context, target, auths, cache))
                error = self.follow(events, stop=lambda: podman.stop_build(handle, events))
                if not cache.push_refused(error):
                    break
        finally:
            # Over in Podman, unless its connection broke: then the sweep looks.
            claim.release(ended=events is None or not events.broken)
        cache.record()
        if error:
            if self.disk_full or _DISK_FULL in error.lower():
                raise BuildFailed(said.DISK_FULL % {"error": error.strip()})
            # The package manager's own line first: it is what an admin can act on.
            if self.last_error_line:
                raise BuildFailed(said.BUILD_FAILED_AT_LINE % {"line": self.last_error_line, "error": error.strip()})
            raise BuildFailed(said.BUILD_FAILED % {"error": error.strip()})
        if podman.inspect_image(target) is None:
            raise BuildFailed(said.NO_IMAGE_TAGGED % {"image": target})

    def _build_auths(self, pull_auth: RegistryAuth | None, cache: SharedCache) -> list[RegistryAuth]:
        """The credentials the build request carries: the base's registry (pull_auth) and,
        while the shared cache uses a repository under REGISTRY, the push credentials for
        it. A base of another registry or under localhost/ needs no pull credential, but
        the cache does: without it such builds found no layer there and every push was
        refused."""
        auths = [pull_auth] if pull_auth else []
        own = self.registry_auth
        if (own and cache.uses_registry()
                and _same_registry(_registry_of(cache.repository), own.host)
                and not any(_same_registry(a.host, own.host) for a in auths)):
            auths.append(own)
        if len(auths) > 1:
            self.logw.add_secret(registry_config_header(auths))
        return auths

    def _start_build(self, podman: Podman, context: bytes, target: str, auth, cache: SharedCache):
        """The build request; the pip index secret, if any, rides in its context only."""
        if not self.pip_secret:
            return podman.build(context, target, auth, cache.build_params())
        return podman.build(self.pip_secret.add_to_context(context), target, auth,
                            {**cache.build_params(), **self.pip_secret.build_params()})

    # Steps 5 and 6: push, then ask the registry.
    def push(self, podman: Podman, target: str) -> Outcome:
        """Push the job's tag and confirm it in the registry. `latest` moves when the
        revision is activated (app/revisions/active.py), after the job has succeeded."""
        ref = ImageRef.parse(target)
        tls_verify = self._tls_verify_for(ref.host)
        self.announce(5, f"Pushing {target}", said.PUSHING)
        self._push(podman, target, tls_verify)

        self.announce(6, f"Confirming {target} in the registry", said.CONFIRMING)
        client = RegistryClient(
            ref.host,
            self.config.get("REGISTRY_USERNAME"),
            self.config.get("REGISTRY_PASSWORD"),
            tls_verify=bool(self.config["REGISTRY_TLS_VERIFY"]),
        )
        manifest = client.manifest(ref.repository, ref.tag)
        if manifest is None:
            raise BuildFailed(said.NOT_LISTED_AFTER_PUSH % {"host": ref.host, "repository": ref.repository, "tag": ref.tag})
        self.logw.line(f"Registry has {target} at {manifest.digest} ({manifest.size_bytes} bytes compressed).")
        return Outcome(image=target, digest=manifest.digest, size_bytes=manifest.size_bytes)

    def _push(self, podman: Podman, push_ref: str, tls_verify: bool | None) -> None:
        error = self.follow(podman.push(push_ref, self.registry_auth, tls_verify))
        if error:
            raise BuildFailed(said.PUSH_FAILED % {"image": push_ref, "error": error.strip()})

    # -- shared plumbing ----------------------------------------------------------------

    def announce(self, number: int, text: str, progress: str) -> None:
        self.logw.step(f"[{number}/{self.STEPS}] {text}")
        self.logw.set_progress(progress)
        self.logw.flush()
        self.check_stop()

    def check_stop(self) -> None:
        if self.heartbeat and self.heartbeat.cancelled.is_set():
            raise BuildStopped(JobStatus.CANCELLED, said.CANCELLED_BY_ADMIN)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BuildStopped(JobStatus.FAILED, said.TIMED_OUT % {"seconds": self.timeout})

    def _note_error_lines(self, text: str) -> None:
        """Remember the last error line of the output, reading whole lines only (apt
        writes "E: " and its message in separate writes, which may arrive apart)."""
        complete, _, self._unfinished_line = (self._unfinished_line + text).rpartition("\n")
        for line in _ERROR_LINE_RE.findall(complete):
            self.last_error_line = self.logw.redact(line.strip())[:300]
        if _DISK_FULL in complete.lower():
            self.disk_full = True

    def follow(self, events, stop=None) -> str | None:
        """Copy a Podman event stream into the log until it ends; its error, if any.

        Between events it flushes the log by time and checks for a cancel request or the
        timeout; then it calls `stop` (or closes the stream) and raises BuildStopped."""
        error = None
        try:
            while True:
                self.check_stop()
                event = events.get(POLL_SECONDS)
                if event is END:
                    self._note_error_lines("\n")  # a last line without its newline
                    return error
                if event is None:
                    self.logw.tick()
                    continue
                if event.get("stream"):
                    self.logw.write(event["stream"])
                    self._note_error_lines(event["stream"])
                if event.get("error"):
                    error = self.logw.redact(str(event["error"]))
                    self.logw.write(error if error.endswith("\n") else error + "\n")
        except BaseException:
            # Cancel, timeout, or the worker shutting down: Podman must not carry on alone.
            if stop:
                self.logw.line("Stopping the build in Podman ...")
                self.logw.flush()
                try:
                    stop()
                except Exception:
                    log.warning("job=%s could not stop its build", self.job_id, exc_info=True)
            raise
        finally:
            events.close()


def _reset_requeue_count() -> None:
    """A hand-back is not a failed start: the reconciler's retry budget starts afresh,
    and the requeue that follows spends none of it."""
    from rq import get_current_job

    from ..ops.reconcile import HANDED_BACK_META, REQUEUES_META

    rq_job = get_current_job()
    if rq_job is not None:
        rq_job.meta[REQUEUES_META] = 0
        rq_job.meta[HANDED_BACK_META] = True
        rq_job.save_meta()


def _crash_message(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "ShutDownImminentException":
        return said.WORKER_SHUT_DOWN
    if name == "JobTimeoutException":
        return said.RQ_TIMEOUT
    return said.INTERNAL_ERROR % {"exception": name, "detail": exc}


def qualified_reference(ref: str) -> str:
    """A Docker Hub short name made explicit (``debian:bookworm`` ->
    ``docker.io/library/debian:bookworm``): Podman resolves no short names here
    (registries.conf lists no search registries), and the build's FROM finds the pulled
    image under its short name in local storage."""
    if ref.startswith(registry_host(ref) + "/"):
        return ref
    return f"docker.io/{ref}" if "/" in ref else f"docker.io/library/{ref}"


def _registry_of(registry_setting: str) -> str:
    """The host[:port] part of REGISTRY (``registry.example.com/imagebuilder``)."""
    return registry_setting.split("/", 1)[0]


def _same_registry(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    return a == b or (a in DOCKER_HUB_ALIASES and b in DOCKER_HUB_ALIASES)
