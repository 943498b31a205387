"""Two real workers on one queue (issue 4, "Running it"): a burst of 20 queued builds of 20
different specs runs at most two at a time, on both workers, first come first served,
and every one succeeds."""
import pytest

from integration.support import BASE, PIP_STUB_INSTALL, assert_succeeded, running_stack, save_spec

pytestmark = pytest.mark.integration

BURST = 20
WORKERS = 2
SLOW_PIP = """#!/bin/sh
echo "imagebuilder-burst: installing $*"
sleep 1
""" + PIP_STUB_INSTALL


@pytest.fixture(scope="module")
def burst_stack(services, tmp_path_factory):
    with running_stack(services, tmp_path_factory.mktemp("burst")) as stack:
        yield stack


def most_at_once(intervals):
    """The largest number of [start, end] intervals that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_a_burst_of_builds_on_two_workers_runs_two_at_a_time_in_order(burst_stack):
    stack = burst_stack
    base = stack.build_helper_image(
        "slow-pip", f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n",
        {"pip": SLOW_PIP.encode()},
    )
    stack.stop_worker(stack.worker)
    # Each spec installs a package of its own, so no build finds its RUN step cached.
    job_ids = [save_spec(stack, name=f"burst-{n:02d}", base_image=base, pip=f"pkg{n}") for n in range(BURST)]

    stack.start_worker(WORKER_NAME=f"first-{stack.sid}")
    stack.spawn_worker(stack.workdir / "second.log", WORKER_NAME=f"second-{stack.sid}")
    jobs = [stack.wait_for(job_id, timeout=600) for job_id in job_ids]

    for job in jobs:
        assert_succeeded(stack, job)
    assert {job.worker for job in jobs} == {f"first-{stack.sid}", f"second-{stack.sid}"}
    assert most_at_once([(job.started_at, job.finished_at) for job in jobs]) == WORKERS

    # First come first served: the n-th job queued is among the jobs started n-th, give
    # or take the other worker's slot.
    start_order = [job.id for job in sorted(jobs, key=lambda job: job.started_at)]
    for queued_rank, job_id in enumerate(job_ids):
        assert abs(start_order.index(job_id) - queued_rank) < WORKERS, start_order
