"""Faults injected for real (issue 4, "Surviving faults"): a worker killed with SIGKILL
mid-build, Redis restarted empty with jobs queued, the Podman service down when a build
starts and gone mid-build, and a registry that refuses the push (wrong password,
unreachable, full disk). Each ends as the issue says: the job row in a correct final
state, nothing run twice, nothing left running in Podman, and the worker still serving.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from app.builds.orphans import claim_path
from app.builds.queue import build_queue, rq_job_id
from app.extensions import db
from app.models import BuildJob, JobStatus
from integration.support import (BASE, PIP_STUB_INSTALL, assert_succeeded, processes_running, running_stack,
                                 save_spec)

pytestmark = pytest.mark.integration

HEARTBEAT_TIMEOUT = 6
RECONCILE_INTERVAL = 2
FAST_OPS = {"HEARTBEAT_TIMEOUT": HEARTBEAT_TIMEOUT, "RECONCILE_INTERVAL": RECONCILE_INTERVAL}
SLEEP_MARK = "imagebuilder-fault: sleeping"
SLEEPY_PIP = f"""#!/bin/sh
echo "{SLEEP_MARK}"
exec sleep 317
"""
QUICK_PIP = """#!/bin/sh
echo "imagebuilder-fault: installing $*"
""" + PIP_STUB_INSTALL
BUILD_USER = "imagebuilder"


@pytest.fixture(scope="module")
def fault_stack(services, tmp_path_factory):
    with running_stack(services, tmp_path_factory.mktemp("faults"), worker_settings=FAST_OPS) as stack:
        yield stack


def pip_image(stack, name, script):
    return stack.build_helper_image(
        name, f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n", {"pip": script.encode()}
    )


@pytest.fixture(scope="module")
def sleepy(fault_stack):
    """A base image whose pip says it sleeps, then sleeps for minutes."""
    return pip_image(fault_stack, "sleepy", SLEEPY_PIP)


@pytest.fixture(scope="module")
def quick(fault_stack):
    """A base image whose pip only prints: a build of a few seconds, no network."""
    return pip_image(fault_stack, "quick", QUICK_PIP)


@pytest.fixture
def main_worker(fault_stack):
    """The stack's worker, back to its own settings after a test that changed them."""
    yield fault_stack
    fault_stack.stop_worker(fault_stack.worker)
    fault_stack.start_worker()


# -- helpers ----------------------------------------------------------------------------


def sleeping_processes():
    return processes_running("sleep", "317")


def children(pid):
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def wait_until(predicate, timeout, message):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message()
        time.sleep(0.3)


def wait_until_sleeping(stack, job_id, timeout=90):
    wait_until(lambda: SLEEP_MARK in stack.log_text(job_id), timeout, stack.worker_tail)


def job_row(stack, job_id):
    with stack.app.app_context():
        job = db.session.get(BuildJob, job_id)
        db.session.expunge(job)
        return job


def build_container_ids(stack):
    podman = stack.podman()
    try:
        return {c["Id"] for c in podman.build_containers()}
    finally:
        podman.close()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(process, sig=signal.SIGTERM):
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# -- 1. a worker killed with SIGKILL mid-build --------------------------------------------


def test_worker_killed_mid_build_is_failed_as_lost_and_its_build_stopped(fault_stack, sleepy, quick, main_worker):
    stack = fault_stack
    stack.stop_worker(stack.worker)
    victim = stack.spawn_worker(stack.workdir / "victim.log", WORKER_NAME=f"victim-{stack.sid}")
    containers_before = build_container_ids(stack)
    job_id = save_spec(stack, name="killed", base_image=sleepy, pip="six")
    wait_until_sleeping(stack, job_id)
    containers_during = build_container_ids(stack)
    assert sleeping_processes(), "the RUN step should be running in Podman"

    stack.start_worker(WORKER_NAME=f"survivor-{stack.sid}")  # its reconciler survives the kill
    # The work horse runs in a process group of its own (RQ): both groups go.
    groups = {os.getpgid(pid) for pid in [victim.pid, *children(victim.pid)]}
    assert len(groups) >= 2, "the victim worker should have a work horse running the build"
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()

    job = stack.wait_for(job_id, timeout=HEARTBEAT_TIMEOUT + 30)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("worker lost (no heartbeat since"), job.error
    assert job.worker == f"victim-{stack.sid}"
    assert time.monotonic() - killed_at < HEARTBEAT_TIMEOUT + 20

    # The orphaned build is stopped in Podman by a surviving worker's sweep (this stack's,
    # or another worker on the same Podman service): RUN step killed, working containers
    # gone, half-built tag removed, and its claim cleared.
    wait_until(lambda: not sleeping_processes(), 30, lambda: f"RUN step still running:\n{stack.worker_tail()}")
    claim = Path(claim_path(stack.settings["PODMAN_URL"], rq_job_id_of(stack, job_id)))
    wait_until(lambda: not claim.exists(), 60, stack.worker_tail)
    assert build_container_ids(stack).isdisjoint(containers_during - containers_before)
    assert containers_during - containers_before, "the build should have had a working container"
    podman = stack.podman()
    try:
        assert podman.inspect_image(f"{stack.registry}/killed:{job.tag}") is None
    finally:
        podman.close()

    # The surviving worker goes on building.
    assert_succeeded(stack, stack.wait_for(save_spec(stack, name="after-kill", base_image=quick, pip="six"), 120))


def rq_job_id_of(stack, job_id):
    with stack.app.app_context():
        return rq_job_id(job_id)


# -- 2. Redis restarted empty while jobs are queued ---------------------------------------


class PrivateRedis:
    """A throwaway redis-server without persistence: restarting it empties it."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for_port(self.port)

    def kill(self):
        stop_process(self.process, signal.SIGKILL)


@pytest.fixture
def private_redis(tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.kill()


def build_jobs_queued() -> int:
    """Build jobs on the queue (the workers also put the shared cache's scheduled prune there)."""
    return sum(1 for job_id in build_queue().job_ids if "-build-" in job_id)


def test_redis_restarted_empty_requeues_each_queued_job_exactly_once(services, tmp_path_factory, private_redis):
    services = {**services, "REDIS_URL": f"redis://127.0.0.1:{private_redis.port}/0"}
    with running_stack(services, tmp_path_factory.mktemp("redis-lost"), worker_settings=FAST_OPS) as stack:
        quick_base = pip_image(stack, "quick", QUICK_PIP)
        stack.stop_worker(stack.worker)  # no worker on the queue while Redis goes
        job_ids = [save_spec(stack, name=f"queued-{n}", base_image=quick_base, pip=f"pkg{n}") for n in range(3)]
        with stack.app.app_context():
            assert build_jobs_queued() == 3

        private_redis.kill()
        private_redis.start()
        with stack.app.app_context():
            assert build_jobs_queued() == 0
            assert [db.session.get(BuildJob, j).status for j in job_ids] == [JobStatus.QUEUED] * 3

        # Two workers, so two reconcilers race to put the jobs back.
        stack.start_worker()
        second_log = stack.workdir / "second.log"
        stack.spawn_worker(second_log)
        jobs = [stack.wait_for(job_id, timeout=180) for job_id in job_ids]
        for job in jobs:
            assert_succeeded(stack, job)
        time.sleep(2 * RECONCILE_INTERVAL + 1)  # more reconciler passes: nothing comes back

        logs = stack.worker_log.read_text() + second_log.read_text()
        for job in jobs:
            assert stack.log_text(job.id).count("==> [1/6]") == 1
            assert len(re.findall(rf"job={job.id} event=requeued reason=missing_from_redis", logs)) == 1
            assert len(re.findall(rf"job={job.id} event=started ", logs)) == 1
            assert job_row(stack, job.id).status == JobStatus.SUCCEEDED
        with stack.app.app_context():
            assert build_jobs_queued() == 0


# -- 3. the Podman service down when a build starts, and gone mid-build -------------------


class PrivatePodmanService:
    """A second rootless Podman API service of the build user (same storage), on a socket
    of its own, that this test may stop without disturbing the stack's."""

    def __init__(self, name):
        import pwd

        user = pwd.getpwnam(BUILD_USER)
        self.uid, self.gid, self.home = user.pw_uid, user.pw_gid, user.pw_dir
        self.socket = f"/run/user/{self.uid}/podman/{name}.sock"
        self.url = f"unix://{self.socket}"
        self.process = None

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)  # left by a killed service: the new one could not bind
        env = {"HOME": self.home, "USER": BUILD_USER, "LOGNAME": BUILD_USER, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
               "XDG_RUNTIME_DIR": f"/run/user/{self.uid}"}
        self.process = subprocess.Popen(
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
             "podman", "system", "service", "--time=0", self.url],
            cwd="/", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.answers():
            assert self.process.poll() is None, "the private podman service exited"
            assert time.monotonic() < deadline, "the private podman service did not come up"
            time.sleep(0.2)

    def answers(self):
        done = subprocess.run(["curl", "-fsS", "--max-time", "3", "--unix-socket", self.socket,
                               "http://d/v4.0.0/libpod/_ping"], capture_output=True)
        return done.returncode == 0

    def kill(self):
        """Gone at once, as a crash leaves it (its RUN step processes stay behind)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def private_podman(fault_stack):
    service = PrivatePodmanService(f"fault-{fault_stack.sid}")
    yield service
    service.kill()
    if os.path.exists(service.socket):
        os.unlink(service.socket)


def test_podman_down_then_gone_mid_build_fails_clearly_and_the_worker_keeps_serving(
        fault_stack, quick, sleepy, private_podman, main_worker):
    stack = fault_stack
    stack.stop_worker(stack.worker)
    stack.start_worker(PODMAN_URL=private_podman.url)
    worker_pid = stack.worker.pid

    # Down when the build starts.
    job = stack.wait_for(save_spec(stack, name="podman-down", base_image=quick, pip="six"), timeout=60)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith(f"The Podman service at {private_podman.url} does not answer"), job.error
    assert job.error in stack.log_text(job.id)

    # Back: the same worker process builds the next job.
    private_podman.start()
    after = stack.wait_for(save_spec(stack, name="podman-back", base_image=quick, pip="six"), timeout=120)
    assert_succeeded(stack, after)
    assert stack.worker.pid == worker_pid and after.worker == job.worker

    # Gone mid-build: the job fails with a clear message, the worker stays up.
    job_id = save_spec(stack, name="podman-gone", base_image=sleepy, pip="six")
    wait_until_sleeping(stack, job_id)
    private_podman.kill()
    job = stack.wait_for(job_id, timeout=60)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("The build failed: lost the connection to Podman during the build"), job.error
    assert stack.worker.poll() is None

    # Back again: the step the dead service left running is stopped by the worker's
    # sweep, and the next job builds.
    private_podman.start()
    wait_until(lambda: not sleeping_processes(), 30, lambda: f"RUN step still running:\n{stack.worker_tail()}")
    claim = Path(claim_path(private_podman.url, rq_job_id_of(stack, job_id)))
    wait_until(lambda: not claim.exists(), 60, stack.worker_tail)
    assert "event=orphan_build_stopped" in stack.worker_log.read_text()
    last = stack.wait_for(save_spec(stack, name="podman-again", base_image=quick, pip="six"), timeout=120)
    assert_succeeded(stack, last)
    assert stack.worker.pid == worker_pid


# -- 4. the registry refuses the push -----------------------------------------------------


def assert_push_failed(stack, job_id, registry, expected):
    """Failed at the push with the registry's own error, never succeeded."""
    job = stack.wait_for(job_id, timeout=180)
    log = stack.log_text(job_id)
    assert job.status == JobStatus.FAILED, f"{job.status}: {job.error}\n{log[-3000:]}"
    assert job.digest is None and job.image is None
    assert job.error.startswith(f"Pushing {registry}/") and expected in job.error, job.error
    assert "==> [5/6] Pushing" in log and "==> Done" not in log and job.error in log
    return job


def test_registry_refusing_the_password_fails_the_job(fault_stack, quick, main_worker):
    stack = fault_stack
    stack.stop_worker(stack.worker)
    stack.start_worker(REGISTRY_PASSWORD="not-the-password")
    job = assert_push_failed(stack, save_spec(stack, name="refused", base_image=quick, pip="six"),
                             stack.registry, "unauthorized: authentication required")
    assert "not-the-password" not in job.error and "not-the-password" not in stack.log_text(job.id)
    assert stack.registry_client().tags(f"it-{stack.sid}/refused") == []


def test_unreachable_registry_fails_the_job(fault_stack, quick, main_worker):
    stack = fault_stack
    stack.stop_worker(stack.worker)
    port = free_port()  # nothing listens there
    stack.start_worker(REGISTRY=f"127.0.0.1:{port}/unreachable")
    assert_push_failed(stack, save_spec(stack, name="unreachable", base_image=quick, pip="six"),
                       f"127.0.0.1:{port}/unreachable", f"dial tcp 127.0.0.1:{port}: connect: connection refused")


@pytest.fixture
def full_registry(tmp_path):
    """A second docker-registry (same htpasswd) whose storage is a 2 MB tmpfs."""
    storage = tmp_path / "storage"
    storage.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(storage)], check=True)
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "auth:\n  htpasswd:\n    realm: basic\n    path: /var/lib/imagebuilder/registry.htpasswd\n"
    )
    process = subprocess.Popen([shutil.which("docker-registry"), "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}", storage
    finally:
        stop_process(process)
        subprocess.run(["umount", str(storage)], check=True)


def test_registry_with_a_full_disk_fails_the_job(fault_stack, quick, full_registry, main_worker):
    stack = fault_stack
    stack.stop_worker(stack.worker)
    registry, storage = full_registry
    stack.start_worker(REGISTRY=f"{registry}/full")
    assert_push_failed(stack, save_spec(stack, name="full", base_image=quick, pip="six"),
                       f"{registry}/full", "500 Internal Server Error")
    disk = os.statvfs(storage)
    assert disk.f_bavail * disk.f_frsize < 64 * 1024, "the registry's disk should be full"
