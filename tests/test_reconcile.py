"""The reconciler, with the faults injected for real: Redis emptied under queued jobs,
a worker whose heartbeat stopped. Real database, real Redis (a database of its own)."""
import threading
import time
from datetime import timedelta

from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from sqlalchemy import event, update

from app.builds.control import cancel_job, claim_job, requeue_later
from app.builds.queue import build_queue, rq_job_id
from app.extensions import db
from app.models import BuildJob, JobStatus, utcnow
from app.ops.reconcile import reconcile, run_periodically
from app.specs.service import create_spec

SPEC = {"name": "demo", "base_image": "debian:bookworm", "apt": "curl\n", "pip": "", "conda": ""}


def _queued_job(name="demo", age_s=60):
    """A queued job the web enqueued `age_s` seconds ago."""
    job = create_spec({**SPEC, "name": name}).job
    _age(job, created_at=utcnow() - timedelta(seconds=age_s))
    return job


def _age(job, **values):
    db.session.execute(update(BuildJob).where(BuildJob.id == job.id).values(**values))
    db.session.commit()
    db.session.refresh(job)


def _rq_ends_it_without_the_row(job, status=RQStatus.FAILED, **meta):
    """RQ ran the job's RQ job and it ended (`status`) without the runner taking the row."""
    queue = build_queue()
    rq_job = queue.fetch_job(rq_job_id(job.id))
    queue.remove(rq_job)
    if meta:
        rq_job.meta.update(meta)
        rq_job.save_meta()
    rq_job.set_status(status)
    return rq_job


def _restart_redis_empty(connection):
    """What a Redis without persistence holds after a restart: nothing."""
    connection.flushdb()


def test_redis_restarted_empty_requeues_each_queued_job_exactly_once(app, private_redis):
    jobs = [_queued_job("one"), _queued_job("two")]
    _restart_redis_empty(private_redis)
    assert build_queue().job_ids == []

    first = reconcile()
    second = reconcile()

    assert first["requeued"] == [job.id for job in jobs]
    assert second["requeued"] == []
    assert build_queue().job_ids == [rq_job_id(job.id) for job in jobs]
    for job in jobs:
        db.session.refresh(job)
        assert job.status == JobStatus.QUEUED


def test_only_the_lost_job_is_requeued(app, private_redis):
    kept = _queued_job("kept")
    lost = _queued_job("lost")
    queue = build_queue()
    queue.remove(rq_job_id(lost.id))
    private_redis.delete(RQJob.key_for(rq_job_id(lost.id)))

    assert reconcile()["requeued"] == [lost.id]
    assert queue.job_ids == [rq_job_id(kept.id), rq_job_id(lost.id)]


def test_reconcilers_of_several_workers_at_once_enqueue_once(app, private_redis):
    job = _queued_job()
    _restart_redis_empty(private_redis)
    start = threading.Barrier(4)
    results = []

    def one_worker():
        with app.app_context():
            start.wait()
            results.append(reconcile()["requeued"])
            db.session.remove()

    threads = [threading.Thread(target=one_worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(results) == [[], [], [], [job.id]]
    assert build_queue().job_ids == [rq_job_id(job.id)]


def test_a_job_just_saved_gets_its_grace_period(app, private_redis):
    """The web commits the row, then enqueues it: the reconciler must not race that."""
    job = create_spec(SPEC).job
    _restart_redis_empty(private_redis)

    assert reconcile()["requeued"] == []
    assert reconcile(now=utcnow() + timedelta(seconds=11))["requeued"] == [job.id]


def test_a_job_waiting_for_its_turn_is_left_alone(app, private_redis):
    job = _queued_job()
    build_queue().empty()
    requeue_later(job.id, 30)

    assert reconcile()["requeued"] == []
    assert build_queue().job_ids == []


def test_a_job_rq_finished_without_taking_the_row_is_requeued(app, private_redis):
    job = _queued_job()
    queue = build_queue()
    _rq_ends_it_without_the_row(job)

    assert reconcile()["requeued"] == [job.id]
    assert queue.job_ids == [rq_job_id(job.id)]
    assert queue.fetch_job(rq_job_id(job.id)).get_status() == RQStatus.QUEUED


def test_a_job_that_cannot_start_is_retried_once_then_failed(app, private_redis):
    job = _queued_job()
    queue = build_queue()

    _rq_ends_it_without_the_row(job)
    assert reconcile()["requeued"] == [job.id]
    _rq_ends_it_without_the_row(job)
    summary = reconcile()

    assert (summary["requeued"], summary["never_started"]) == ([], [job.id])
    db.session.refresh(job)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("never started: its RQ job ended failed again after a retry")
    assert queue.job_ids == []


def test_a_job_rq_ended_moments_ago_waits_for_the_next_pass(app, private_redis):
    """The worker that ran it may still be finishing its own bookkeeping on that RQ id."""
    job = _queued_job()
    rq_job = _rq_ends_it_without_the_row(job, RQStatus.FINISHED)
    rq_job.ended_at = utcnow()
    rq_job.save()

    assert reconcile()["requeued"] == []
    assert reconcile(now=utcnow() + timedelta(seconds=11))["requeued"] == [job.id]


def test_a_job_handed_back_at_shutdown_keeps_its_retry(app, private_redis):
    """A hand-back (a deploy) is not a failed start: after it, a job RQ then ends without
    taking the row still gets its one retry."""
    from app.ops.reconcile import HANDED_BACK_META

    job = _queued_job()

    _rq_ends_it_without_the_row(job, RQStatus.FINISHED, **{HANDED_BACK_META: True})
    assert reconcile()["requeued"] == [job.id]
    _rq_ends_it_without_the_row(job)
    assert reconcile()["requeued"] == [job.id]
    _rq_ends_it_without_the_row(job)
    assert reconcile()["never_started"] == [job.id]
    db.session.refresh(job)
    assert job.status == JobStatus.FAILED


def test_redis_lost_twice_requeues_twice(app, private_redis):
    """Only a job RQ ran counts as a try: an emptied Redis is not the job's fault."""
    job = _queued_job()
    for _ in range(2):
        _restart_redis_empty(private_redis)
        assert reconcile()["requeued"] == [job.id]
    assert build_queue().job_ids == [rq_job_id(job.id)]


def test_running_job_without_heartbeat_fails_as_worker_lost(app, private_redis):
    job = _queued_job()
    assert claim_job(job.id, "worker-killed")
    stopped = utcnow() - timedelta(seconds=61)
    _age(job, heartbeat_at=stopped)

    summary = reconcile()

    assert summary["worker_lost"] == [job.id]
    db.session.refresh(job)
    assert job.status == JobStatus.FAILED
    assert job.error == f"worker lost (no heartbeat since {stopped:%Y-%m-%d %H:%M:%S} UTC)"
    assert job.finished_at is not None
    assert reconcile()["worker_lost"] == []


def test_a_heartbeat_landing_during_the_check_wins(app, private_redis):
    """The worker was only slow: its beat arrives between the reconciler's read and its
    update. The compare-and-set on the heartbeat value leaves the job running."""
    job = _queued_job()
    assert claim_job(job.id, "worker-slow")
    _age(job, heartbeat_at=utcnow() - timedelta(minutes=5))
    beats = []

    def beat_first(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE build_jobs") and not beats:
            beats.append(utcnow())
            with db.engine.connect() as worker_connection:
                worker_connection.execute(
                    update(BuildJob).where(BuildJob.id == job.id).values(heartbeat_at=beats[0])
                )
                worker_connection.commit()

    event.listen(db.engine, "before_cursor_execute", beat_first)
    try:
        assert reconcile()["worker_lost"] == []
    finally:
        event.remove(db.engine, "before_cursor_execute", beat_first)
    db.session.refresh(job)
    assert (job.status, job.heartbeat_at) == (JobStatus.RUNNING, beats[0])


def test_worker_lost_while_cancelling_ends_cancelled(app, private_redis):
    job = _queued_job()
    assert claim_job(job.id, "worker-killed")
    assert cancel_job(job)
    _age(job, heartbeat_at=utcnow() - timedelta(minutes=5))

    assert reconcile()["worker_lost"] == [job.id]
    db.session.refresh(job)
    assert job.status == JobStatus.CANCELLED
    assert job.error.startswith("worker lost (no heartbeat since ")


def test_running_job_with_a_recent_heartbeat_is_left_alone(app, private_redis):
    job = _queued_job()
    assert claim_job(job.id, "worker-alive")
    _age(job, heartbeat_at=utcnow() - timedelta(seconds=20))

    assert reconcile()["worker_lost"] == []
    db.session.refresh(job)
    assert job.status == JobStatus.RUNNING


def test_worker_lost_before_its_first_heartbeat(app, private_redis):
    job = _queued_job()
    _age(job, status=JobStatus.RUNNING, heartbeat_at=None, started_at=utcnow() - timedelta(minutes=5))

    assert reconcile()["worker_lost"] == [job.id]
    db.session.refresh(job)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("worker lost (no heartbeat since ")


def test_heartbeat_timeout_is_a_setting(app, private_redis):
    app.config["HEARTBEAT_TIMEOUT"] = 300
    job = _queued_job()
    assert claim_job(job.id, "slow-worker")
    _age(job, heartbeat_at=utcnow() - timedelta(seconds=120))

    assert reconcile()["worker_lost"] == []


def test_redis_down_still_fails_lost_workers(app, private_redis):
    job = _queued_job("lost")
    assert claim_job(job.id, "worker-killed")
    _age(job, heartbeat_at=utcnow() - timedelta(minutes=5))
    _queued_job("waiting")
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"

    summary = reconcile()

    assert summary["worker_lost"] == [job.id]
    assert summary["requeued"] == []
    assert "Connection refused" in summary["redis_error"]


def test_reconcile_command(app, runner, private_redis):
    job = _queued_job()
    _restart_redis_empty(private_redis)

    result = runner.invoke(args=["reconcile"])

    assert result.exit_code == 0, result.output
    assert f"requeued: [{job.id}]" in result.output
    assert build_queue().job_ids == [rq_job_id(job.id)]


def _build_job_ids():
    return [job_id for job_id in build_queue().job_ids if "-build-" in job_id]


def test_run_periodically_reconciles_in_the_background(app, private_redis):
    lost = _queued_job("lost")
    assert claim_job(lost.id, "worker-killed")
    _age(lost, heartbeat_at=utcnow() - timedelta(minutes=5))
    waiting = _queued_job("waiting")
    _restart_redis_empty(private_redis)
    stop = threading.Event()

    thread = run_periodically(app, 0.1, stop=stop)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _build_job_ids() != [rq_job_id(waiting.id)]:
        time.sleep(0.1)
    stop.set()
    thread.join(5)

    assert not thread.is_alive()
    assert _build_job_ids() == [rq_job_id(waiting.id)]
    assert f"{app.config['RQ_QUEUE']}-prune-cache" in build_queue().job_ids  # the shared cache's prune, due
    db.session.refresh(lost)
    assert lost.status == JobStatus.FAILED
