"""Builds stopped for real while a RUN step runs: by BUILD_TIMEOUT, by an admin's cancel,
and by the worker being told to shut down (SIGTERM, as a deploy does). Each time the RUN
step is killed in Podman, no build container is left behind, and the job row ends in a
final state."""
import os
import re
import signal
import time

import pytest

from app.builds.control import cancel_job
from app.extensions import db
from app.models import BuildJob, JobStatus
from integration.support import BASE, assert_succeeded, running_stack, save_spec

pytestmark = pytest.mark.integration

# Long enough for a real pip install and the verify step on a busy two-core build host.
TIMEOUT = 25
SLEEPY_PIP = """#!/bin/sh
echo "imagebuilder-sleepy: sleeping"
exec sleep 313
"""


@pytest.fixture(scope="module")
def short_stack(services, tmp_path_factory):
    with running_stack(services, tmp_path_factory.mktemp("timeout"), build_timeout=TIMEOUT) as stack:
        yield stack


def sleeping_processes():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read().split(b"\0")[:2] == [b"sleep", b"313"]:
                    found.append(pid)
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def sleepy(short_stack):
    """A base image whose pip says it sleeps, then sleeps for minutes."""
    return short_stack.build_helper_image(
        "sleepy", f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n",
        {"pip": SLEEPY_PIP.encode()},
    )


def wait_until_sleeping(stack, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while "imagebuilder-sleepy: sleeping" not in stack.log_text(job_id):
        assert time.monotonic() < deadline, stack.worker_tail()
        time.sleep(0.2)


def assert_nothing_left(stack):
    """The stopped build's RUN step was killed and its working container is gone."""
    stops = re.findall(r"stopping build container ([0-9a-f]{12}): killed (\d+)", stack.worker_log.read_text())
    assert stops, stack.worker_tail()
    container, killed = stops[-1]
    assert int(killed) >= 1
    deadline = time.monotonic() + 20
    while sleeping_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sleeping_processes() == []
    podman = stack.podman()
    try:
        assert not [c for c in podman.build_containers() if c["Id"].startswith(container)]
    finally:
        podman.close()


def test_build_timeout_stops_the_build_and_fails_the_job(short_stack, sleepy):
    started = time.monotonic()
    job = short_stack.wait_for(save_spec(short_stack, name="sleepy", base_image=sleepy, pip="six"), timeout=120)
    took = time.monotonic() - started

    assert job.status == JobStatus.FAILED
    assert job.error == f"The build timed out after {TIMEOUT} s (BUILD_TIMEOUT)."
    assert took < TIMEOUT + 30, f"the job took {took:.0f}s to end"
    log = short_stack.log_text(job.id)
    assert "imagebuilder-sleepy: sleeping" in log and "Stopping the build in Podman" in log

    assert_nothing_left(short_stack)

    # The same worker takes the next job.
    assert_succeeded(short_stack, short_stack.wait_for(save_spec(short_stack, name="after", base_image=BASE, pip="six")))


def test_cancel_stops_a_running_build_within_seconds(short_stack, sleepy):
    job_id = save_spec(short_stack, name="cancelled", base_image=sleepy, pip="idna")
    wait_until_sleeping(short_stack, job_id)
    with short_stack.app.app_context():
        assert cancel_job(db.session.get(BuildJob, job_id))
    asked = time.monotonic()
    job = short_stack.wait_for(job_id, timeout=60)
    assert job.status == JobStatus.CANCELLED
    assert time.monotonic() - asked < 15
    assert_nothing_left(short_stack)


def test_worker_sigterm_mid_build_hands_the_job_back(short_stack, sleepy):
    job_id = save_spec(short_stack, name="interrupted", base_image=sleepy, pip="six")
    wait_until_sleeping(short_stack, job_id)
    short_stack.worker.send_signal(signal.SIGTERM)
    short_stack.worker.wait(60)
    with short_stack.app.app_context():
        job = db.session.get(BuildJob, job_id)
        # Handed back, not lost: queued again, with nothing of the stopped build's run left.
        assert job.status == JobStatus.QUEUED, (job.status, job.error, short_stack.worker_tail())
        assert job.worker is None and job.started_at is None and job.error is None
    assert "Handed back: the worker is shutting down" in short_stack.log_text(job_id)
    assert_nothing_left(short_stack)

    # The next worker (after the deploy) takes it up again, exactly once: here the sleepy
    # step meets the stack's short BUILD_TIMEOUT, which ends it for good.
    short_stack.start_worker()
    job = short_stack.wait_for(job_id, timeout=90)
    assert job.status == JobStatus.FAILED and "timed out" in job.error, (job.status, job.error)
    log = short_stack.log_text(job_id)
    assert log.count("==> [1/6]") == 2 and log.count("Handed back") == 1
    assert_nothing_left(short_stack)
