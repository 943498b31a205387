"""The pages an admin keeps open, and the API list, take the same number of SQL queries
whether the catalogue holds 3 specs or 30: nothing is fetched per row or per job."""
from contextlib import contextmanager

import pytest
from flask import current_app
from sqlalchemy import event, select

from app.crypto import encrypt_secret
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, LogChunk, RegistryCredential

FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def add_catalogue(first: int, count: int) -> None:
    """Specs ``first``..``first+count-1``: every other one with a pull secret, spec n with n+1
    jobs (the newest running), each job with n+1 log chunks."""
    for n in range(first, first + count):
        secret = None
        if n % 2:
            secret = RegistryCredential(name=f"cred{n}", registry_host="ghcr.io", username="robot",
                                        password_encrypted=encrypt_secret("pa55-Word"))
        spec = ImageSpec(name=f"spec{n:03d}", base_image="debian:bookworm", pull_secret=secret,
                         apt=["curl"], pip=[], conda=[])
        db.session.add(spec)
        for revision in range(1, n + 2):
            newest = revision == n + 1
            job = BuildJob(spec=spec, revision=revision, input_hash=f"{n:08x}{revision:08x}",
                           status=JobStatus.RUNNING if newest else FINISHED[revision % 3],
                           image=f"registry.example/spec{n}:r{revision}", spec_snapshot={"containerfile": "FROM x\n"})
            db.session.add(job)
            db.session.flush()
            db.session.add_all(LogChunk(job_id=job.id, seq=seq, text=f"line {seq}\n") for seq in range(n + 1))
    db.session.commit()


@contextmanager
def counted_queries():
    statements = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def running_job_of(spec_name: str) -> int:
    return db.session.scalar(
        select(BuildJob.id).join(ImageSpec).where(ImageSpec.name == spec_name, BuildJob.status == JobStatus.RUNNING)
    )


def queries(get, url: str, expect: str, times: int = 1) -> int:
    """The queries of one request, whose answer holds ``expect`` at least ``times`` times.

    The request runs in an app context of its own, as in a server: a session and a ``g``
    that remember nothing from the test's rows or from earlier requests."""
    with current_app.app_context(), counted_queries() as statements:
        response = get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert response.get_data(as_text=True).count(expect) >= times
    return len(statements)


@pytest.mark.parametrize(
    "page",
    ["spec list", "row refresh", "Jobs tab", "log poll", "API spec list"],
)
def test_queries_do_not_grow_with_specs_and_jobs(client, auth, api, page):
    """From 3 specs with 6 jobs to 30 specs with 465 jobs: the row refreshed is the same
    spec; the Jobs tab and the log are those of the busiest spec, with the most jobs and chunks."""
    def measure():
        specs = db.session.scalar(select(db.func.count(ImageSpec.id)))
        busiest = db.session.scalar(select(ImageSpec.name).order_by(ImageSpec.name.desc()))
        if page == "spec list":
            return queries(client.get, "/", expect='id="spec-row-', times=specs)
        if page == "row refresh":
            return queries(client.get, "/specs/spec002/row", expect="spec002")
        if page == "Jobs tab":
            return queries(client.get, f"/specs/{busiest}/edit?tab=jobs", expect="jobs-table")
        if page == "log poll":
            return queries(client.get, f"/jobs/{running_job_of(busiest)}/log?offset=0", expect="line 0")
        return queries(api.get, "/api/v1/specs", expect='"status"', times=specs)

    add_catalogue(0, 3)
    few = measure()
    add_catalogue(3, 27)
    assert db.session.scalar(select(db.func.count(BuildJob.id))) == sum(n + 1 for n in range(30))
    assert measure() == few


def test_spec_list_shows_fifty_specs_a_page(client, auth):
    for n in range(53):
        db.session.add(ImageSpec(name=f"spec{n:03d}", base_image="debian:bookworm", apt=[], pip=[], conda=[]))
    db.session.commit()

    first = client.get("/").get_data(as_text=True)
    assert first.count('id="spec-row-') == 50
    assert "Page 1 of 2 · 53 specs" in first and 'href="/?page=2"' in first
    second = client.get("/?page=2").get_data(as_text=True)
    assert [f"spec{n:03d}" in second for n in (49, 50, 51, 52)] == [False, True, True, True]
    assert 'href="/?page=1"' in second and "Next" not in second
