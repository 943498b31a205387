"""One build job, from the queue to the registry: the RQ job function ``run_build``.

The job's database row is the truth. ``run_build(job_id)`` moves it ``queued -> running``
with a compare-and-set update (so a job never runs twice and a cancelled one never
starts), then pulls the base image, checks it, builds, pushes and confirms the push
against the registry, announcing each step in the log. Whatever happens, the row ends
``succeeded``, ``failed`` or ``cancelled`` with an error summary.

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
from ..models import BuildJob, JobStatus, RegistryCredential, utcnow
from ..specs.containerfile import CA_BUNDLE_CONTEXT_NAME, BuildOptions, render_containerfile
from ..specs.validation import SpecInput, registry_host
from .control import claim_job, requeue_later
from .logs import append_log_chunk
from .logwriter import LogWriter
from .orphans import BuildClaim
from .podman import END, Podman, PodmanFailure, RegistryAuth, build_context
from .queue import rq_job_id
from .registry import ImageRef, RegistryClient, RegistryError

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
POLL_SECONDS = 0.2
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
            .values(status=JobStatus.CANCELLED, error="Cancelled before it started.", finished_at=now, updated_at=now)
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


def _db_store(job_id: int):
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
    STEPS = 5

    def __init__(self, job_id: int, config):
        self.job_id = job_id
        self.config = config
        self.timeout = int(config["BUILD_TIMEOUT"])
        self.registry_auth = None
        if config.get("REGISTRY_USERNAME"):
            self.registry_auth = RegistryAuth(
                _registry_of(config["REGISTRY"]), config["REGISTRY_USERNAME"], config.get("REGISTRY_PASSWORD") or ""
            )
        self.logw = LogWriter(
            _db_store(job_id),
            max_bytes=int(config["LOG_MAX_BYTES"]),
            flush_seconds=float(config["LOG_FLUSH_SECONDS"]),
            secrets=self.registry_auth.secret_forms() if self.registry_auth else (),
        )
        self.logw.add_secret(config.get("REGISTRY_PASSWORD"))
        self.heartbeat: Heartbeat | None = None
        self.deadline = None
        self.last_error_line: str | None = None  # a package manager's "E: ..." / "ERROR: ..."
        self.disk_full = False  # the output or Podman said "no space left on device"
        self._unfinished_line = ""  # Podman's stream chunks need not end at line ends

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
        status, error, fields = JobStatus.FAILED, "The build ended unexpectedly.", {}
        try:
            outcome = self.build()
            status, error = JobStatus.SUCCEEDED, None
            fields = {"image": outcome.image, "digest": outcome.digest, "size_bytes": outcome.size_bytes,
                      "progress": None}
            self.logw.step(f"Done: {outcome.image} ({outcome.digest}) in {time.monotonic() - started:.1f} s")
        except BuildStopped as exc:
            status, error = exc.status, str(exc)
            self._log_end(f"{status.capitalize()}: {exc}")
        except (BuildFailed, PodmanFailure, RegistryError) as exc:
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
        return status

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
            return self.push(podman, target)
        finally:
            podman.close()

    # Step 1: the base image.
    def _pull_auth(self, spec: SpecInput) -> RegistryAuth | None:
        if not spec.pull_secret:
            return None
        cred = db.session.scalar(select(RegistryCredential).where(RegistryCredential.name == spec.pull_secret))
        if cred is None:
            raise BuildFailed(f"The pull secret {spec.pull_secret!r} no longer exists; choose another one for this spec.")
        host = registry_host(spec.base_image)
        if not _same_registry(cred.registry_host, host):
            raise BuildFailed(
                f"Credential {cred.name!r} is for registry {cred.registry_host}, but the base image "
                f"{spec.base_image} comes from {host}; it is not sent there."
            )
        auth = RegistryAuth(cred.registry_host, cred.username, credential_password(cred))
        for form in auth.secret_forms():
            self.logw.add_secret(form)
        return auth

    def pull_base(self, podman: Podman, spec: SpecInput, auth: RegistryAuth | None) -> dict:
        base = spec.base_image
        self.announce(1, f"Pulling base image {base}", "pulling base image")
        if base.startswith("localhost/"):
            self.logw.line(f"{base} is a local image (localhost/): using the build host's copy, never pulled.")
            info = podman.inspect_image(base)
            if info is None:
                raise BuildFailed(f"The base image {base} is not in the build host's local image storage "
                                  "(images under localhost/ are never pulled).")
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
                raise BuildFailed(f"Podman reported pulling {base} but does not have it.")
        self.logw.line(f"Base image {base}: id {info.get('Id', '?')[:12]}, digest {info.get('Digest', '?')}")
        return info

    def _pull_error(self, spec: SpecInput, host: str, error: str) -> str:
        lowered = error.lower()
        if any(word in lowered for word in ("unauthorized", "authentication required", "denied", "forbidden", "401", "403")):
            if spec.pull_secret:
                return (f"Credential {spec.pull_secret!r} was refused by registry {host} for {spec.base_image}: "
                        "check its username and password on the Credentials page.")
            return (f"The base image {spec.base_image} needs a registry credential ({host} asked for one, or the "
                    f"image does not exist there): tick 'use image pull secret' and choose a credential for {host}.")
        if "manifest unknown" in lowered or "not found" in lowered or "name unknown" in lowered:
            return f"The base image {spec.base_image} was not found in registry {host}: {error}"
        return f"Pulling the base image {spec.base_image} failed: {error}"

    def _tls_verify_for(self, host: str) -> bool | None:
        """False only for the operator's registry marked REGISTRY_TLS_VERIFY=false; otherwise
        Podman's registries.conf decides."""
        if host == _registry_of(self.config["REGISTRY"]) and not self.config["REGISTRY_TLS_VERIFY"]:
            return False
        return None

    # Step 2: pre-flight checks.
    def preflight(self, podman: Podman, spec: SpecInput, base: dict) -> str | None:
        self.announce(2, "Pre-flight checks", "pre-flight")
        base_user = (base.get("Config") or {}).get("User") or None
        if base_user and base_user not in ("root", "0", "0:0"):
            self.logw.line(f"The base image runs as {base_user}; the build installs as root and restores {base_user} at the end.")
        else:
            self.logw.line("The base image runs as root; the build installs as root.")
        if spec.conda:
            tool = podman.find_conda_tool(base.get("Id") or spec.base_image)
            if not tool:
                raise BuildFailed(
                    f"Conda packages need micromamba, mamba or conda in the base image, and {spec.base_image} has "
                    "none. Use a base image that ships one (for example mambaorg/micromamba) or move these "
                    "packages to pip."
                )
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
                raise BuildFailed(f"BUILD_CA_BUNDLE {ca_path} cannot be read: {exc.strerror}") from None
        options = BuildOptions(
            ca_bundle=bool(ca_path),
            pip_index_url=self.config.get("PIP_INDEX_URL"),
            pip_extra_index_urls=tuple(self.config.get("PIP_EXTRA_INDEX_URLS") or ()),
            base_user=base_user,
        )
        containerfile = render_containerfile(spec, options)
        return containerfile, build_context(containerfile, extra)

    def store_containerfile(self, snapshot: dict, containerfile: str) -> None:
        """The exact Containerfile built goes into the snapshot as ``containerfile_built``;
        ``containerfile`` stays the preview the tag's hash was computed from."""
        job = db.session.get(BuildJob, self.job_id)
        job.spec_snapshot = {**snapshot, "containerfile_built": containerfile}
        db.session.commit()

    def build_image(self, podman: Podman, context: bytes, target: str, base: dict, auth: RegistryAuth | None):
        self.announce(3, f"Building {target}", "building")
        handle = podman.start_handle(base.get("Id", ""))
        # Held while the build runs: should this process die, the worker sweep finds the
        # build by its claim and stops it (app/builds/orphans.py).
        claim = BuildClaim.take(self.config["PODMAN_URL"], rq_job_id(self.job_id), handle, target)
        events = None
        try:
            events = podman.build(context, target, auth)
            error = self.follow(events, stop=lambda: podman.stop_build(handle, events))
        finally:
            # Over in Podman, unless its connection broke: then the sweep looks.
            claim.release(ended=events is None or not events.broken)
        if error:
            if self.disk_full or _DISK_FULL in error.lower():
                raise BuildFailed(
                    "The build host ran out of disk space (no space left on device) during the build: free space "
                    f"in Podman's storage on the build host, then build again. (Podman: {error.strip()})"
                )
            # The package manager's own line first: it is what an admin can act on.
            if self.last_error_line:
                raise BuildFailed(f"The build failed: {self.last_error_line} (Podman: {error.strip()})")
            raise BuildFailed(f"The build failed: {error.strip()}.")
        if podman.inspect_image(target) is None:
            raise BuildFailed(f"The build ended without an image tagged {target}.")

    # Steps 4 and 5: push, then ask the registry.
    def push(self, podman: Podman, target: str) -> Outcome:
        """Push the job's tag and confirm it in the registry; only then move `latest`."""
        ref = ImageRef.parse(target)
        tls_verify = self._tls_verify_for(ref.host)
        self.announce(4, f"Pushing {target}", "pushing")
        self._push(podman, target, tls_verify)

        self.announce(5, f"Confirming {target} in the registry", "confirming")
        client = RegistryClient(
            ref.host,
            self.config.get("REGISTRY_USERNAME"),
            self.config.get("REGISTRY_PASSWORD"),
            tls_verify=bool(self.config["REGISTRY_TLS_VERIFY"]),
        )
        manifest = client.manifest(ref.repository, ref.tag)
        if manifest is None:
            raise BuildFailed(f"The registry {ref.host} does not list {ref.repository}:{ref.tag} after the push.")
        self.logw.line(f"Registry has {target} at {manifest.digest} ({manifest.size_bytes} bytes compressed).")
        if self.config.get("REGISTRY_PUSH_LATEST"):
            latest = ImageRef(ref.host, ref.repository, "latest")
            self.logw.line(f"Moving {latest}")
            podman.tag_image(target, f"{ref.host}/{ref.repository}", "latest")
            self._push(podman, str(latest), tls_verify)
            moved = client.manifest(ref.repository, "latest")
            if moved is None or moved.digest != manifest.digest:
                raise BuildFailed(f"The registry's {ref.repository}:latest is not the image just pushed.")
        return Outcome(image=target, digest=manifest.digest, size_bytes=manifest.size_bytes)

    def _push(self, podman: Podman, push_ref: str, tls_verify: bool | None) -> None:
        error = self.follow(podman.push(push_ref, self.registry_auth, tls_verify))
        if error:
            raise BuildFailed(f"Pushing {push_ref} failed: {error.strip()}")

    # -- shared plumbing ----------------------------------------------------------------

    def announce(self, number: int, text: str, progress: str) -> None:
        self.logw.step(f"[{number}/{self.STEPS}] {text}")
        self.logw.set_progress(progress)
        self.logw.flush()
        self.check_stop()

    def check_stop(self) -> None:
        if self.heartbeat and self.heartbeat.cancelled.is_set():
            raise BuildStopped(JobStatus.CANCELLED, "Cancelled by an admin.")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BuildStopped(JobStatus.FAILED, f"The build timed out after {self.timeout} s (BUILD_TIMEOUT).")

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
    """A hand-back is not a failed start: the reconciler's retry budget starts afresh."""
    from rq import get_current_job

    from ..ops.reconcile import REQUEUES_META

    rq_job = get_current_job()
    if rq_job is not None and rq_job.meta.get(REQUEUES_META):
        rq_job.meta[REQUEUES_META] = 0
        rq_job.save_meta()


def _crash_message(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "ShutDownImminentException":
        return "The worker shut down during the build (a deploy or restart); rebuild to try again."
    if name == "JobTimeoutException":
        return "RQ's job timeout ended the build; it overran BUILD_TIMEOUT and could not be stopped in time."
    return f"Internal error: {name}: {exc}"


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
