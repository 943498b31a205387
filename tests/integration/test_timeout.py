"""BUILD_TIMEOUT ends a build for real: the job fails "timed out", Podman's RUN step is
killed, no build container is left behind, and the worker takes the next job."""
import os
import time

import pytest

from app.models import JobStatus
from integration.support import BASE, assert_succeeded, running_stack, save_spec

pytestmark = pytest.mark.integration

TIMEOUT = 8
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


def test_build_timeout_stops_the_build_and_fails_the_job(short_stack):
    sleepy = short_stack.build_helper_image(
        "sleepy", f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n",
        {"pip": SLEEPY_PIP.encode()},
    )
    started = time.monotonic()
    job = short_stack.wait_for(save_spec(short_stack, name="sleepy", base_image=sleepy, pip="six"), timeout=120)
    took = time.monotonic() - started

    assert job.status == JobStatus.FAILED
    assert job.error == f"The build timed out after {TIMEOUT} s (BUILD_TIMEOUT)."
    assert took < TIMEOUT + 30, f"the job took {took:.0f}s to end"
    log = short_stack.log_text(job.id)
    assert "imagebuilder-sleepy: sleeping" in log and "Stopping the build in Podman" in log

    # Nothing of the build is left running or lying around in Podman.
    deadline = time.monotonic() + 20
    while sleeping_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sleeping_processes() == []
    podman = short_stack.podman()
    try:
        sleepy_id = podman.inspect_image(sleepy)["Id"]
        assert [c for c in podman.build_containers() if c.get("ImageID") == sleepy_id] == []
    finally:
        podman.close()

    # The same worker takes the next job.
    assert_succeeded(short_stack, short_stack.wait_for(save_spec(short_stack, name="after", base_image=BASE, pip="six")))
