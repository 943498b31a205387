"""Admin controls: cancel, supersede, one active build per spec, requeue later.
Real database, real Redis (a database of the test's own), a real RQ worker and scheduler."""
import threading
import time
from datetime import datetime, timezone

from rq import SimpleWorker
from rq.job import Job as RQJob
from rq.scheduler import RQScheduler
from sqlalchemy import update

from app.builds.control import can_start, cancel_job, claim_job, requeue_later
from app.builds.queue import BUILD_FUNCTION, build_queue, enqueue_options, rq_job_id
from app.extensions import db
from app.models import BuildJob, JobStatus
from app.specs.service import create_spec, rebuild_spec, update_spec

SPEC = {"name": "demo", "base_image": "debian:bookworm", "apt": "curl\n", "pip": "", "conda": ""}


def _set_status(job, status):
    db.session.execute(update(BuildJob).where(BuildJob.id == job.id).values(status=status))
    db.session.commit()
    db.session.refresh(job)


def test_cancel_queued_job_never_starts(app, private_redis):
    job = create_spec(SPEC).job
    assert build_queue().job_ids == [rq_job_id(job.id)]

    assert cancel_job(job) is True

    db.session.refresh(job)
    assert job.status == JobStatus.CANCELLED
    assert job.error == "cancelled by an admin"
    assert job.finished_at is not None
    assert build_queue().job_ids == []
    assert not private_redis.exists(RQJob.key_for(rq_job_id(job.id)))
    assert claim_job(job.id, "worker-1") is False  # the runner's compare-and-set refuses it


def test_cancel_running_job_asks_the_runner_to_stop(app, private_redis):
    job = create_spec(SPEC).job
    assert claim_job(job.id, "worker-1")

    assert cancel_job(job) is True

    db.session.refresh(job)
    assert job.status == JobStatus.RUNNING  # the runner stops Podman and ends it cancelled
    assert job.cancel_requested is True


def test_cancel_finished_job_changes_nothing(app, private_redis):
    job = create_spec(SPEC).job
    _set_status(job, JobStatus.SUCCEEDED)

    assert cancel_job(job) is False

    db.session.refresh(job)
    assert job.status == JobStatus.SUCCEEDED
    assert job.cancel_requested is False
    assert job.error is None


def test_latest_edit_supersedes_older_queued_jobs(app, private_redis):
    spec = create_spec(SPEC).spec
    first = spec.jobs.first()
    second = update_spec(spec, {**SPEC, "pip": "requests\n"}).job
    third = rebuild_spec(spec)

    for job in (first, second):
        db.session.refresh(job)
        assert job.status == JobStatus.CANCELLED
    assert first.error == "superseded by r2"
    assert second.error == "superseded by r3"
    assert third.status == JobStatus.QUEUED
    assert build_queue().job_ids == [rq_job_id(third.id)]


def test_a_running_job_is_not_superseded(app, private_redis):
    spec = create_spec(SPEC).spec
    running = spec.jobs.first()
    assert claim_job(running.id, "worker-1")

    queued = rebuild_spec(spec)

    db.session.refresh(running)
    assert running.status == JobStatus.RUNNING
    assert queued.status == JobStatus.QUEUED
    assert can_start(queued) is False
    assert claim_job(queued.id, "worker-2") is False
    db.session.refresh(queued)
    assert queued.status == JobStatus.QUEUED  # waits for its turn, not lost

    _set_status(running, JobStatus.SUCCEEDED)
    assert can_start(queued) is True
    assert claim_job(queued.id, "worker-2") is True
    db.session.refresh(queued)
    assert (queued.status, queued.worker) == (JobStatus.RUNNING, "worker-2")
    assert queued.started_at is not None and queued.heartbeat_at is not None


def test_two_workers_claiming_one_spec_at_once_have_one_winner(app, private_redis):
    spec = create_spec(SPEC).spec
    jobs = [spec.jobs.first()]
    for _ in range(3):
        job = BuildJob(spec_id=spec.id, revision=len(jobs) + 1, input_hash="x", spec_snapshot={})
        db.session.add(job)
        jobs.append(job)
    db.session.commit()
    ids = [job.id for job in jobs]
    start = threading.Barrier(len(ids))
    results = {}

    def claim(job_id):
        with app.app_context():
            start.wait()
            results[job_id] = claim_job(job_id, f"worker-{job_id}")
            db.session.remove()

    threads = [threading.Thread(target=claim, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(results.values()) == [False, False, False, True]
    db.session.expire_all()
    running = [job for job in jobs if db.session.get(BuildJob, job.id).status == JobStatus.RUNNING]
    assert len(running) == 1


def test_requeue_later_waits_in_the_scheduled_registry(app, private_redis):
    job = create_spec(SPEC).job
    queue = build_queue()
    queue.empty()

    assert requeue_later(job.id, 30) is True

    registry = queue.scheduled_job_registry
    assert registry.get_job_ids() == [rq_job_id(job.id)]
    when = registry.get_scheduled_time(rq_job_id(job.id))
    assert 25 < (when - datetime.now(timezone.utc)).total_seconds() <= 30
    scheduled = RQJob.fetch(rq_job_id(job.id), connection=private_redis, serializer=queue.serializer)
    assert (scheduled.func_name, scheduled.args) == (BUILD_FUNCTION, [job.id])
    assert queue.job_ids == []


CALLS = []


def ask_again_once(job_id):
    """Stands in for the runner: the first time, its spec is busy, so it asks for later."""
    CALLS.append(job_id)
    if len(CALLS) == 1:
        requeue_later(job_id, 1)


def test_a_job_requeued_from_inside_its_own_run_runs_again(app, private_redis):
    """The runner calls requeue_later with the RQ job id it is running under; RQ's
    bookkeeping of the ending run must not lose the new schedule."""
    job = create_spec(SPEC).job
    queue = build_queue()
    queue.empty()
    queue.enqueue(f"{__name__}.ask_again_once", job.id, **enqueue_options(job.id))
    CALLS.clear()
    worker = SimpleWorker([queue], connection=private_redis, serializer=queue.serializer)

    worker.work(burst=True)
    assert CALLS == [job.id]
    assert rq_job_id(job.id) in queue.scheduled_job_registry.get_job_ids()

    time.sleep(1.2)
    scheduler = RQScheduler([queue], connection=private_redis, serializer=queue.serializer)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()
    assert queue.job_ids == [rq_job_id(job.id)]
    rq_job = RQJob.fetch(rq_job_id(job.id), connection=private_redis, serializer=queue.serializer)
    # The ending run saves its own job over the new schedule: same function, same id.
    assert (rq_job.func_name, rq_job.args) == (f"{__name__}.ask_again_once", [job.id])

    worker.work(burst=True)
    assert CALLS == [job.id, job.id]
    assert queue.job_ids == [] and queue.scheduled_job_registry.get_job_ids() == []
