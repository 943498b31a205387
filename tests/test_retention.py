"""Retention: old jobs and old failed logs go; what the catalogue still shows stays."""
from datetime import timedelta

from sqlalchemy import event, func, select

from app.builds.logs import append_log_chunk, read_log
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobPackage, JobStatus, LogChunk, utcnow
from app.ops import retention
from app.ops.retention import prune_jobs


def _spec_with_jobs(name, statuses, finished_days_ago=0):
    """A spec with one job per status, oldest first, each with a two-chunk log; their ids."""
    spec = ImageSpec(name=name, base_image="debian:bookworm", apt=[], pip=[], conda=[])
    db.session.add(spec)
    db.session.flush()
    finished = utcnow() - timedelta(days=finished_days_ago)
    jobs = []
    for revision, status in enumerate(statuses, start=1):
        job = BuildJob(
            spec_id=spec.id,
            revision=revision,
            input_hash=f"{revision:08x}",
            status=status,
            spec_snapshot={},
            finished_at=finished if status in JobStatus.FINISHED else None,
        )
        db.session.add(job)
        db.session.flush()
        append_log_chunk(job, f"STEP 1/2 of r{revision}\n")
        append_log_chunk(job, f"STEP 2/2 of r{revision}\n")
        jobs.append(job)
    db.session.commit()
    return spec, [job.id for job in jobs]


def _revisions(spec):
    return db.session.scalars(
        select(BuildJob.revision).where(BuildJob.spec_id == spec.id).order_by(BuildJob.revision)
    ).all()


def _chunks(job_ids):
    return db.session.scalar(select(func.count()).where(LogChunk.job_id.in_(job_ids)))


def test_keeps_the_last_n_jobs_of_each_spec_with_their_logs(app):
    spec, jobs = _spec_with_jobs("many", [JobStatus.FAILED] * 8)
    other, _other_jobs = _spec_with_jobs("few", [JobStatus.FAILED] * 2)

    summary = prune_jobs(keep_last=3)

    assert summary["jobs_deleted"] == 5
    assert _revisions(spec) == [6, 7, 8]
    assert _revisions(other) == [1, 2]
    assert _chunks(jobs[:5]) == 0
    assert read_log(jobs[-1]) == ("STEP 1/2 of r8\nSTEP 2/2 of r8\n", 2)


def test_never_prunes_the_latest_succeeded_or_an_active_job(app):
    statuses = [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED, JobStatus.RUNNING, JobStatus.QUEUED]
    spec, _jobs = _spec_with_jobs("busy", statuses + [JobStatus.FAILED] * 3)

    prune_jobs(keep_last=2)

    # r1 is an older success: pruned. r2 is the image the catalogue shows; r3 and r4 are active.
    assert _revisions(spec) == [2, 3, 4, 6, 7]


def test_never_prunes_the_active_revision_or_its_manifest(app):
    spec, jobs = _spec_with_jobs("rolled-back", [JobStatus.SUCCEEDED] * 6)
    spec.active_revision = 2
    db.session.add_all(JobPackage(job_id=job_id, manager="apt", name="jq", version="1.6", requested=True)
                       for job_id in jobs)
    db.session.commit()

    summary = prune_jobs(keep_last=2)

    # r2 is the active revision (a rollback); r6 is also the latest succeeded.
    assert summary["jobs_deleted"] == 3
    assert _revisions(spec) == [2, 5, 6]
    assert db.session.scalars(select(JobPackage.job_id).order_by(JobPackage.job_id)).all() == [jobs[1], jobs[4], jobs[5]]
    assert _chunks([jobs[1]]) == 2


def test_failed_logs_expire_after_the_set_days(app):
    _spec, old = _spec_with_jobs("old", [JobStatus.FAILED, JobStatus.SUCCEEDED], finished_days_ago=15)
    _spec, recent = _spec_with_jobs("recent", [JobStatus.FAILED], finished_days_ago=13)

    summary = prune_jobs(failed_log_days=14)

    assert summary == {"jobs_deleted": 0, "failed_logs_deleted": 1, "audit_events_deleted": 0}
    failed, succeeded = old
    assert _chunks([failed]) == 0
    failed_job = db.session.get(BuildJob, failed)
    assert failed_job.status == JobStatus.FAILED and failed_job.log_bytes == 0  # the row stays
    assert _chunks([succeeded]) == 2
    assert _chunks(recent) == 2
    assert prune_jobs(failed_log_days=14)["failed_logs_deleted"] == 0


def test_deletes_in_bounded_batches(app, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_SIZE", 2)
    spec, jobs = _spec_with_jobs("batches", [JobStatus.CANCELLED] * 9)
    statements = []

    def count_deletes(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE"):
            statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", count_deletes)
    try:
        assert prune_jobs(keep_last=1)["jobs_deleted"] == 8
    finally:
        event.remove(engine, "before_cursor_execute", count_deletes)

    assert _revisions(spec) == [9]
    assert _chunks(jobs[:8]) == 0
    # 8 jobs, 2 per batch: 4 DELETEs of jobs, each after its own DELETE of their log chunks.
    assert sum("build_jobs" in s for s in statements) == 4
    assert sum("log_chunks" in s for s in statements) == 4


def test_settings_give_the_defaults(app):
    app.config.update(JOB_RETENTION_COUNT=2, FAILED_LOG_RETENTION_DAYS=1)
    spec, _jobs = _spec_with_jobs("defaults", [JobStatus.FAILED] * 4, finished_days_ago=2)

    assert prune_jobs() == {"jobs_deleted": 2, "failed_logs_deleted": 2, "audit_events_deleted": 0}
    assert _revisions(spec) == [3, 4]


def test_prune_command(app, runner):
    spec, _jobs = _spec_with_jobs("cli", [JobStatus.FAILED] * 4)

    result = runner.invoke(args=["prune", "--keep-last", "1"])

    assert result.exit_code == 0, result.output
    assert "jobs_deleted: 3" in result.output
    assert _revisions(spec) == [4]
