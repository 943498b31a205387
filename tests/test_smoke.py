def test_pages_need_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_spec_saved_starts_a_queued_job(app, queued_rq_jobs):
    from app.models import JobStatus
    from app.specs.service import create_spec

    outcome = create_spec({"name": "demo", "base_image": "debian:bookworm", "apt": "curl\n", "pip": "", "conda": ""})
    assert outcome.ok, outcome.result.errors
    assert outcome.job.status == JobStatus.QUEUED
    assert outcome.job.revision == 1
    assert queued_rq_jobs() == [f"{app.config['RQ_QUEUE']}-build-{outcome.job.id}"]
