"""The real stack for integration (and browser) tests: services, a database made by the
migrations, a real ``python worker.py`` on a queue of its own, and helpers to drive it.

Nothing here is faked: the rootless Podman service, the htpasswd registry, Redis and the
worker process are the ones the product uses. scripts/services.sh and
scripts/base-image.sh start (or reuse) them; when they fail the tests fail, loudly.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from rq.serializers import JSONSerializer
from sqlalchemy import select

from app import create_app
from app.auth.service import create_or_update_user
from app.builds.podman import Podman, RegistryAuth, build_context
from app.builds.queue import build_queue, redis_connection, rq_job_id
from app.builds.registry import RegistryClient
from app.credentials.service import create_credential
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, LogChunk
from app.specs.service import create_spec, update_spec
from scratchdb import drop_scratch_database, scratch_database_uri

REPO = Path(__file__).resolve().parents[2]
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "correct-horse-battery"
SERVICE_VARIABLES = ("PODMAN_URL", "REGISTRY_USERNAME", "REGISTRY_PASSWORD", "BUILD_CA_BUNDLE",
                     "IMAGEBUILDER_TEST_BASE", "REDIS_URL")
REGISTRY_HOST = "127.0.0.1:5000"
BASE = "localhost/debian:bookworm"  # made by scripts/base-image.sh
# The end of a fake pip in a helper base image: like a real install, it leaves each
# requested distribution installed (a dist-info at version 1.0), so that the verify
# step's manifest finds what the spec asked for.
PIP_STUB_INSTALL = r"""site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
for word in "$@"; do
  case "$word" in install|-*) continue;; esac
  name=${word%%[][ ;<>=!~]*}
  mkdir -p "$site/$name-1.0.dist-info"
  printf 'Metadata-Version: 2.1\nName: %s\nVersion: 1.0\n' "$name" > "$site/$name-1.0.dist-info/METADATA"
done
"""


def start_services() -> dict:
    """Run the project's own setup scripts (idempotent) and return scripts/env.sh's settings."""
    for script in ("services.sh", "base-image.sh"):
        done = subprocess.run(["bash", str(REPO / "scripts" / script)], cwd=REPO, capture_output=True,
                              text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/{script} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    clean = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    done = subprocess.run(["bash", "-c", f". {REPO / 'scripts/env.sh'} && env -0"], capture_output=True,
                          env=clean, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/env.sh failed: {done.stderr.decode()[-2000:]}")
    env = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    missing = [name for name in ("PODMAN_URL", "REGISTRY_PASSWORD") if not env.get(name)]
    if missing:
        raise RuntimeError(f"scripts/env.sh did not provide {', '.join(missing)}")
    return {name: env[name] for name in SERVICE_VARIABLES if name in env}


@contextmanager
def running_stack(services: dict, workdir: Path, **options):
    """A started Stack for a fixture to yield; a stack that cannot start fails the test."""
    stack = Stack(workdir=workdir, services=services, **options)
    try:
        stack.start()
    except Exception as exc:
        stack.stop()
        pytest.fail(f"The integration stack could not be started: {exc}", pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()


@dataclass
class Stack:
    """One worker process and the app the tests use, sharing a database and a queue."""

    workdir: Path
    services: dict
    log_max_bytes: int = 256 * 1024
    build_timeout: int = 900
    sid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    app: object = None
    worker: subprocess.Popen | None = None
    # More worker environment (e.g. HEARTBEAT_TIMEOUT), and every worker started (for stop).
    worker_settings: dict = field(default_factory=dict)
    extra_workers: list = field(default_factory=list)

    def __post_init__(self):
        self.registry = f"{REGISTRY_HOST}/it-{self.sid}"
        # RQ job ids (build-<job id>) are global to a Redis database, and every test
        # database numbers its jobs from 1: a Redis database of its own keeps other test
        # runs on the same Redis from emptying this one's jobs.
        redis_base = self.services.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
        self.settings = {
            "REDIS_URL": f"{redis_base}/{1 + int(self.sid, 16) % 15}",
            "SQLALCHEMY_DATABASE_URI": scratch_database_uri(self.workdir / "it.db"),
            "SECRET_KEY": uuid.uuid4().hex,
            "CREDENTIALS_KEY": Fernet.generate_key().decode(),
            "RQ_QUEUE": f"it-{self.sid}",
            "PODMAN_URL": self.services["PODMAN_URL"],
            "REGISTRY": self.registry,
            "REGISTRY_USERNAME": self.services.get("REGISTRY_USERNAME", "imagebuilder"),
            "REGISTRY_PASSWORD": self.services["REGISTRY_PASSWORD"],
            "REGISTRY_TLS_VERIFY": False,
            "REGISTRY_PUSH_LATEST": True,
            "BUILD_CA_BUNDLE": self.services.get("BUILD_CA_BUNDLE") or None,
            "LOG_MAX_BYTES": self.log_max_bytes,
            "BUILD_TIMEOUT": self.build_timeout,
        }

    # -- lifecycle ----------------------------------------------------------------------

    def start(self):
        # The schema as the Procfile's release step makes it; in a process of its own,
        # because Alembic's env.py reconfigures logging in the process it runs in.
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=REPO,
                              env=self.worker_env(), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"flask db upgrade failed:\n{done.stderr[-3000:]}")
        self.app = create_app({**self.settings, "WTF_CSRF_ENABLED": False})
        with self.app.app_context():
            create_or_update_user(ADMIN_USERNAME, ADMIN_PASSWORD)
        self.start_worker()
        return self

    def worker_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY", "PODMAN", "BUILD_", "LOG_"))}
        env.update(
            DATABASE_URL=self.settings["SQLALCHEMY_DATABASE_URI"],
            REDIS_URL=self.settings["REDIS_URL"],
            SECRET_KEY=self.settings["SECRET_KEY"],
            CREDENTIALS_KEY=self.settings["CREDENTIALS_KEY"],
            RQ_QUEUE=self.settings["RQ_QUEUE"],
            PODMAN_URL=self.settings["PODMAN_URL"],
            REGISTRY=self.registry,
            REGISTRY_USERNAME=self.settings["REGISTRY_USERNAME"],
            REGISTRY_PASSWORD=self.settings["REGISTRY_PASSWORD"],
            REGISTRY_TLS_VERIFY="false",
            REGISTRY_PUSH_LATEST="true",
            LOG_MAX_BYTES=str(self.log_max_bytes),
            BUILD_TIMEOUT=str(self.settings["BUILD_TIMEOUT"]),
            INSTANCE_PATH=str(self.workdir / "instance"),
            PYTHONUNBUFFERED="1",
            # Off unless a test turns it on: a round fetched between two builds would
            # decide which path of the shared cache a test exercises.
            BUILD_CACHE_PREFETCH="false",
        )
        if self.settings["BUILD_CA_BUNDLE"]:
            env["BUILD_CA_BUNDLE"] = self.settings["BUILD_CA_BUNDLE"]
        env.update({name: str(value) for name, value in self.worker_settings.items()})
        return env

    @property
    def worker_log(self) -> Path:
        return self.workdir / "worker.log"

    def start_worker(self, **env):
        """(Re)start the main worker; `env` overrides its settings (e.g. REGISTRY)."""
        self.worker = self.spawn_worker(self.worker_log, **env)

    def spawn_worker(self, log_path: Path, **env) -> subprocess.Popen:
        """One more ``python worker.py`` on this stack's queue, logging to `log_path`.
        Its name is WORKER_NAME when given. Stopped with the stack."""
        worker_env = {**self.worker_env(), **{name: str(value) for name, value in env.items()}}
        start = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as out:
            worker = subprocess.Popen([sys.executable, "worker.py"], cwd=REPO, env=worker_env,
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        worker.log_path = log_path
        self.extra_workers.append(worker)
        deadline = time.monotonic() + 30
        while "listening on queue" not in log_path.read_bytes()[start:].decode(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker.py did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return worker

    def stop_worker(self, worker: subprocess.Popen | None):
        if worker and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)

    def stop(self):
        for worker in [self.worker, *self.extra_workers]:
            self.stop_worker(worker)
        if self.app is not None:
            with self.app.app_context():
                build_queue().delete(delete_jobs=True)
                db.engine.dispose()
        drop_scratch_database(self.settings["SQLALCHEMY_DATABASE_URI"])
        self.remove_local_images()

    def remove_local_images(self):
        """The images this session tagged in Podman's storage (layers stay for the cache)."""
        podman = self.podman()
        try:
            for image in _local_images(podman):
                for name in image.get("Names") or image.get("RepoTags") or []:
                    if f"/it-{self.sid}/" in name or f"it-{self.sid}" in name:
                        podman.client.api.delete(f"/images/{name.replace('/', '%2F')}", params={"force": True})
        finally:
            podman.close()

    def worker_tail(self, lines: int = 60) -> str:
        """The end of the running worker's own log (a test may have started another)."""
        path = getattr(self.worker, "log_path", None) or self.worker_log
        try:
            return f"({path.name})\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no worker log)"

    # -- driving it ---------------------------------------------------------------------

    def podman(self) -> Podman:
        return Podman(self.settings["PODMAN_URL"])

    def registry_client(self, username=None, password=None) -> RegistryClient:
        return RegistryClient(REGISTRY_HOST, username or self.settings["REGISTRY_USERNAME"],
                              password or self.settings["REGISTRY_PASSWORD"], tls_verify=False)

    def registry_auth(self) -> RegistryAuth:
        return RegistryAuth(REGISTRY_HOST, self.settings["REGISTRY_USERNAME"], self.settings["REGISTRY_PASSWORD"])

    def wait_for(self, job_id: int, timeout: float = 600) -> BuildJob:
        """The job row once it has finished (a detached copy). For a succeeded job, also
        once the worker is done with it: what follows the final state (activation and
        `latest`, notices, cascades) has run by then."""
        deadline = time.monotonic() + timeout
        with self.app.app_context():
            while True:
                job = db.session.get(BuildJob, job_id)
                if job.status in JobStatus.FINISHED:
                    db.session.expunge(job)
                    if job.status == JobStatus.SUCCEEDED:
                        self._wait_for_rq_end(job_id)
                    return job
                if self.worker.poll() is not None:
                    raise AssertionError(f"worker.py exited ({self.worker.returncode}):\n{self.worker_tail()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"job {job_id} still {job.status} after {timeout}s:\n{self.worker_tail()}")
                db.session.remove()
                time.sleep(0.5)

    def _wait_for_rq_end(self, job_id: int, timeout: float = 30) -> None:
        """Until the build's RQ job is no longer started: the runner has returned."""
        deadline = time.monotonic() + timeout
        redis = redis_connection()
        while time.monotonic() < deadline:
            try:
                status = RQJob.fetch(rq_job_id(job_id), connection=redis, serializer=JSONSerializer).get_status(refresh=True)
            except NoSuchJobError:
                return
            if status != RQStatus.STARTED:
                return
            time.sleep(0.2)
        raise AssertionError(f"job {job_id}: the worker still runs its RQ job {timeout}s after its final state:\n"
                             f"{self.worker_tail()}")

    def wait_for_active(self, name: str, revision: int, timeout: float = 60) -> None:
        """Until revision `revision` of spec `name` is active: the runner activates a
        succeeded build (and moves `latest`) just after its final state is written."""
        deadline = time.monotonic() + timeout
        with self.app.app_context():
            while True:
                active = db.session.scalar(select(ImageSpec.active_revision).where(ImageSpec.name == name))
                if active == revision:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} r{revision} not active after {timeout}s (r{active} is):\n"
                                         f"{self.worker_tail()}")
                db.session.remove()
                time.sleep(0.2)

    def log_text(self, job_id: int) -> str:
        with self.app.app_context():
            return "".join(db.session.scalars(
                select(LogChunk.text).where(LogChunk.job_id == job_id).order_by(LogChunk.seq)
            ))

    def chunk_count(self, job_id: int) -> int:
        with self.app.app_context():
            return len(db.session.scalars(select(LogChunk.id).where(LogChunk.job_id == job_id)).all())

    def build_helper_image(self, name: str, containerfile: str, files: dict[str, bytes] | None = None) -> str:
        """A small base image made here from the test base (e.g. with a recording pip).

        Labelled with the session and its name, so builds on it run their steps for real
        rather than finding them in the layer cache of an earlier session or of another
        helper image of this one."""
        tag = f"localhost/it-{self.sid}-{name}:1"
        containerfile += f"LABEL imagebuilder.test.session={self.sid} imagebuilder.test.image={name}\n"
        podman = self.podman()
        try:
            output = drain(podman.build(build_context(containerfile, files), tag))
            if podman.inspect_image(tag) is None:
                raise RuntimeError(f"building {tag} left no image:\n{output[-3000:]}")
        finally:
            podman.close()
        return tag

    def registry_base(self, name: str, distinct: bool = False) -> tuple[str, str]:
        """A base image in the registry that only this session has built on (so no build
        host has its layers cached from before), and the name of a pull secret for it:
        builds on it send registry auth, which the shared cache's pushes use too. A
        `distinct` one is an image of its own (a label), so that no step built on another
        base of the session has its cache keys."""
        ref = f"{REGISTRY_HOST}/it-{self.sid}/{name}:1"
        label = f"LABEL imagebuilder.test-base={name}\n" if distinct else ""
        local = self.build_helper_image(name, f"FROM {BASE}\n{label}")
        podman = self.podman()
        try:
            podman.tag_image(local, ref.rsplit(":", 1)[0], "1")
            drain(podman.push(ref, self.registry_auth(), tls_verify=False))
        finally:
            podman.close()
        return ref, self.registry_credential(f"{name}-{self.sid}")

    def registry_credential(self, name: str) -> str:
        """A stored registry credential `name` for the test registry (the push user's); its name."""
        with self.app.app_context():
            _, errors = create_credential({"name": name, "registry": REGISTRY_HOST,
                                           "username": self.settings["REGISTRY_USERNAME"],
                                           "password": self.settings["REGISTRY_PASSWORD"]})
            assert not errors, errors
        return name

    def redis_dump(self) -> str:
        """Every key and value in Redis, as text, to search for secrets."""
        with self.app.app_context():
            redis = redis_connection()
        parts = []
        for key in redis.scan_iter(count=1000):
            kind = redis.type(key).decode()
            values = []
            if kind == "string":
                values = [redis.get(key)]
            elif kind == "hash":
                for field_name, value in redis.hgetall(key).items():
                    values += [field_name, value]
            elif kind == "list":
                values = redis.lrange(key, 0, -1)
            elif kind == "set":
                values = list(redis.smembers(key))
            elif kind == "zset":
                values = [member for member, _score in redis.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                values = [repr(entry).encode() for entry in redis.xrange(key)]
            parts.append(key.decode("utf-8", "replace"))
            parts += [_readable(value) for value in values if value is not None]
        return "\n".join(parts)


def save_spec(stack, **data):
    with stack.app.app_context():
        outcome = create_spec({"apt": "", "pip": "", "conda": "", **data})
        assert outcome.ok, [e.as_dict() for e in outcome.result.errors]
        return outcome.job.id


def change_spec(stack, name, **data):
    with stack.app.app_context():
        spec = db.session.scalar(select(ImageSpec).where(ImageSpec.name == name))
        values = {"base_image": spec.base_image, "pull_secret": spec.pull_secret.name if spec.pull_secret else None,
                  "apt": spec.apt, "pip": spec.pip, "conda": spec.conda, "test_command": spec.test_command, **data}
        outcome = update_spec(spec, values)
        assert outcome.ok and outcome.job, [e.as_dict() for e in outcome.result.errors]
        return outcome.job.id


def assert_succeeded(stack, job):
    assert job.status == JobStatus.SUCCEEDED, f"{job.error}\n--- log ---\n{stack.log_text(job.id)[-4000:]}"


def pull_and_run(stack, job, command):
    """Pull the pushed image BY DIGEST from the registry and run `command` in it."""
    podman = stack.podman()
    try:
        ref = f"{job.image.rsplit(':', 1)[0]}@{job.digest}"
        drain(podman.pull(ref, stack.registry_auth(), tls_verify=False))
        return podman.run_shell(ref, command)
    finally:
        podman.close()


def processes_running(*argv: str) -> list[int]:
    """Pids of the processes whose command line starts with `argv` (e.g. a RUN step's
    ``sleep 317``), whoever runs them."""
    wanted = [arg.encode() for arg in argv]
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read().split(b"\0")[:len(wanted)] == wanted:
                    found.append(int(pid))
        except OSError:
            continue
    return found


def drain(events, timeout: float = 600) -> str:
    """Read a Podman event stream to its end; its text. An error event raises."""
    from app.builds.podman import END

    text = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = events.get(1)
        if event is END:
            return "".join(text)
        if event is None:
            continue
        text.append(event.get("stream") or "")
        if event.get("error"):
            raise RuntimeError(f"Podman reported: {event['error']}\n{''.join(text)[-3000:]}")
    raise RuntimeError(f"no end of the Podman stream after {timeout}s")


def _local_images(podman) -> list[dict]:
    """Podman's image list. Podman 4.3 fails the whole list now and then while another
    build removes an image ("image not known"), so it is asked again."""
    for attempt in range(1, 6):
        response = podman.client.api.get("/images/json")
        if response.status_code < 400:
            return response.json()
        time.sleep(0.2 * attempt)
    raise RuntimeError(f"Podman could not list its images: {response.text[:500]}")


def _readable(value: bytes) -> str:
    """RQ stores job data and tracebacks zlib-compressed: search the plain text too."""
    try:
        value = zlib.decompress(value)
    except zlib.error:
        pass
    return value.decode("utf-8", "replace")
