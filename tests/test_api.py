"""The JSON API, as an automation script uses it: token, specs, jobs, logs, credentials."""
import re

import pytest
import yaml
from sqlalchemy import func, select

from app.builds.queue import rq_job_id
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, LogChunk, RegistryCredential, utcnow

SPEC_KEYS = {"name", "base_image", "pull_secret", "apt", "pip", "conda", "test_command", "created_at", "updated_at",
             "status", "image", "active_revision", "auto_activate",
             "base_policy", "base_update_digest", "base_checked_at", "base_check_error"}
JOB_KEYS = {
    "id", "spec", "revision", "hash", "status", "image", "digest", "error", "packages_count", "active", "trigger",
    "base_digest",
    "created_at", "started_at", "finished_at", "updated_at",
}
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
PASSWORD = "pa55-Word-never-shown"

DEMO = {"name": "demo", "base_image": "debian:bookworm", "apt": ["curl"], "pip": ["requests"], "conda": []}


def create(api, **overrides):
    response = api.post("/api/v1/specs", json={**DEMO, **overrides})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def job_count():
    return db.session.scalar(select(func.count(BuildJob.id)))


def error_locations(response):
    assert response.status_code == 422, response.get_data(as_text=True)
    return {(e["field"], e["line"]) for e in response.get_json()["errors"]}


# Authentication

EVERY_ENDPOINT = [
    ("get", "/api/v1/specs"),
    ("post", "/api/v1/specs"),
    ("get", "/api/v1/specs/demo"),
    ("patch", "/api/v1/specs/demo"),
    ("delete", "/api/v1/specs/demo"),
    ("get", "/api/v1/specs/demo/jobs"),
    ("post", "/api/v1/specs/demo/rebuild"),
    ("post", "/api/v1/specs/demo/check-base"),
    ("get", "/api/v1/jobs/1"),
    ("get", "/api/v1/jobs/1/log"),
    ("post", "/api/v1/jobs/1/cancel"),
    ("get", "/api/v1/jobs/1/packages"),
    ("get", "/api/v1/jobs/1/sbom"),
    ("get", "/api/v1/specs/demo/compare?from=1&to=2"),
    ("post", "/api/v1/specs/demo/pin"),
    ("get", "/api/v1/credentials"),
    ("post", "/api/v1/credentials"),
    ("get", "/api/v1/credentials/hub"),
    ("patch", "/api/v1/credentials/hub"),
    ("delete", "/api/v1/credentials/hub"),
    ("get", "/api/v1/no-such-endpoint"),
]


@pytest.mark.parametrize("method, url", EVERY_ENDPOINT)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer ib_not-a-real-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YWRtaW46Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5"},
    ],
    ids=["no-header", "bad-token", "empty-token", "basic-auth"],
)
def test_every_endpoint_needs_a_valid_token(client, admin, method, url, headers):
    response = getattr(client, method)(url, headers=headers, json={})
    assert response.status_code == 401
    assert response.is_json and response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_signed_in_browser_session_is_not_an_api_token(client, auth):
    response = client.get("/api/v1/specs")
    assert response.status_code == 401


def test_api_needs_no_csrf_token(tmp_path, admin):
    from tests.conftest import make_app
    from app.auth.service import issue_token

    csrf_app = make_app(tmp_path / "csrf", WTF_CSRF_ENABLED=True, SQLALCHEMY_DATABASE_URI=db.engine.url)
    with csrf_app.app_context():
        token = issue_token(db.session.merge(admin))
        response = csrf_app.test_client().post(
            "/api/v1/specs", json=DEMO, headers={"Authorization": f"Bearer {token}"}
        )
        db.session.remove()
    assert response.status_code == 201, response.get_data(as_text=True)


# The OpenAPI document

def test_openapi_document_is_public_and_parses(client):
    response = client.get("/api/v1/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    document = yaml.safe_load(response.get_data(as_text=True))
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/api/v1"}]


def test_openapi_document_describes_every_api_route(app):
    document = yaml.safe_load(app.test_client().get("/api/v1/openapi.yaml").get_data(as_text=True))
    described = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
        if method != "parameters"
    }
    routed = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.unknown_route":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v1"):])
        routed |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == described


# Specs

def test_create_spec_answers_201_and_enqueues_a_queued_job(api, queued_rq_jobs):
    body = create(api, apt=["git", "curl", "# a comment", ""], pip=["Requests>=2"])
    assert set(body) == SPEC_KEYS | {"job"}
    assert body["name"] == "demo"
    assert body["apt"] == ["curl", "git"]
    assert body["pip"] == ["requests>=2"]
    assert body["pull_secret"] is None
    assert body["status"] == JobStatus.QUEUED
    assert body["image"] is None
    assert ISO_UTC.match(body["created_at"]) and ISO_UTC.match(body["updated_at"])
    job = body["job"]
    assert JOB_KEYS <= set(job)
    assert (job["spec"], job["revision"], job["status"]) == ("demo", 1, JobStatus.QUEUED)
    assert job["tag"] == f"r1-{job['hash']}"
    assert queued_rq_jobs() == [rq_job_id(job['id'])]


INJECTION_CASES = [
    ("apt", ["curl;id"], 1),
    ("apt", ["curl", "$(id)"], 2),
    ("apt", ["curl", "git", "`id`"], 3),
    ("apt", ["-oAPT::Update::Pre-Invoke::=id"], 1),
    ("apt", ["curl", "git curl"], 2),
    ("apt", ["curl", "curl"], 2),
    ("pip", ["--extra-index-url http://x"], 1),
    ("pip", ["requests", "x @ https://h/x.whl"], 2),
    ("pip", ["$(id)"], 1),
    ("pip", ["requests; id"], 1),
    ("conda", ["numpy[url=http://x]"], 1),
    ("conda", ["numpy", "`id`"], 2),
    ("conda", ["https://evil.example/channel::numpy"], 1),
]


@pytest.mark.parametrize("field, lines, bad_line", INJECTION_CASES)
def test_create_refuses_bad_package_lines_with_their_line_number(api, queued_rq_jobs, field, lines, bad_line):
    response = api.post("/api/v1/specs", json={**DEMO, field: lines})
    assert error_locations(response) == {(field, bad_line)}
    assert all(e["message"] for e in response.get_json()["errors"])
    assert db.session.scalar(select(func.count(ImageSpec.id))) == 0
    assert queued_rq_jobs() == []


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"name": "Demo"}, {("name", None)}),
        ({"name": "a..b"}, {("name", None)}),
        ({"name": "curl;id"}, {("name", None)}),
        ({"name": "x" * 129}, {("name", None)}),
        ({"name": ""}, {("name", None)}),
        ({"base_image": "debian:bookworm\nRUN id"}, {("base_image", None)}),
        ({"base_image": "debian bookworm"}, {("base_image", None)}),
        ({"base_image": "$(id)"}, {("base_image", None)}),
        ({"base_image": ""}, {("base_image", None)}),
        ({"pull_secret": "nobody"}, {("pull_secret", None)}),
        # Every problem of the request at once, in field order.
        ({"name": "BAD", "apt": ["ok-pkg", "curl;id"], "pip": ["-r x.txt"]},
         {("name", None), ("apt", 2), ("pip", 1)}),
    ],
)
def test_create_refuses_bad_names_base_images_and_secrets(api, overrides, expected):
    response = api.post("/api/v1/specs", json={**DEMO, **overrides})
    assert error_locations(response) == expected
    assert db.session.scalar(select(func.count(ImageSpec.id))) == 0


@pytest.mark.parametrize(
    "overrides, expected, message",
    [
        ({"apt": "curl\ngit"}, {("apt", None)}, "list of strings"),
        ({"pip": {"requests": "2"}}, {("pip", None)}, "list of strings"),
        ({"apt": ["curl", 7]}, {("apt", 2)}, "string"),
        ({"apt": ["curl", "git\nRUN id"]}, {("apt", 2)}, "line breaks"),
        ({"conda": ["numpy\r\nRUN id"]}, {("conda", 1)}, "line breaks"),
        ({"name": 5}, {("name", None)}, "string"),
        ({"base_image": ["debian"]}, {("base_image", None)}, "string"),
        ({"pull_secret": 3}, {("pull_secret", None)}, "credential name"),
        ({"test_command": ["ls"]}, {("test_command", None)}, "one-line shell command"),
        ({"test_command": "ls\nid"}, {("test_command", None)}, "One line only"),
        ({"packages": ["curl"]}, {("packages", None)}, "Unknown field"),
        # A blanked element keeps the others' line numbers.
        ({"apt": [None, "curl;id"]}, {("apt", 1), ("apt", 2)}, "string"),
    ],
)
def test_create_refuses_values_of_the_wrong_shape(api, overrides, expected, message):
    response = api.post("/api/v1/specs", json={**DEMO, **overrides})
    assert error_locations(response) == expected
    assert message in response.get_json()["errors"][0]["message"]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"null", b'"demo"', b""])
def test_a_body_that_is_not_a_json_object_is_a_400(api, body):
    response = api.post("/api/v1/specs", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]


def test_duplicate_name_is_refused(api):
    create(api)
    response = api.post("/api/v1/specs", json=DEMO)
    assert error_locations(response) == {("name", None)}
    assert "already exists" in response.get_json()["errors"][0]["message"]


def test_list_specs_shows_latest_status_and_the_active_image(api):
    create(api, name="beta")
    first = create(api, name="alpha")["job"]
    job = db.session.get(BuildJob, first["id"])
    job.status, job.image = JobStatus.SUCCEEDED, "127.0.0.1:5000/imagebuilder/alpha:r1-x"
    job.spec.active_revision = 1
    db.session.commit()
    assert api.post("/api/v1/specs/alpha/rebuild").status_code == 202

    response = api.get("/api/v1/specs")
    assert response.status_code == 200
    specs = response.get_json()["specs"]
    assert [s["name"] for s in specs] == ["alpha", "beta"]
    assert all(set(s) == SPEC_KEYS for s in specs)
    assert specs[0]["status"] == JobStatus.QUEUED
    assert specs[0]["image"] == "127.0.0.1:5000/imagebuilder/alpha:r1-x"
    assert specs[1]["image"] is None


def test_list_specs_takes_the_same_number_of_queries_for_any_number_of_specs(api):
    from sqlalchemy import event

    def add_specs(numbers):
        for number in numbers:
            api.post("/api/v1/credentials", json={"name": f"cred{number}", "registry": "ghcr.io", "username": "u", "password": PASSWORD})
            create(api, name=f"spec{number}", pull_secret=f"cred{number}")

    def queries_for_list():
        db.session.expunge_all()  # the test shares the app's session: start from an empty one
        statements = []
        count = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert len(api.get("/api/v1/specs").get_json()["specs"]) == db.session.scalar(select(func.count(ImageSpec.id)))
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        return len(statements)

    add_specs(range(2))
    few = queries_for_list()
    add_specs(range(2, 8))
    assert queries_for_list() == few


def test_get_spec(api):
    create(api)
    body = api.get("/api/v1/specs/demo").get_json()
    assert set(body) == SPEC_KEYS
    assert body["apt"] == ["curl"] and body["pip"] == ["requests"] and body["conda"] == []


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/v1/specs/nope"),
        ("patch", "/api/v1/specs/nope"),
        ("delete", "/api/v1/specs/nope"),
        ("get", "/api/v1/specs/nope/jobs"),
        ("post", "/api/v1/specs/nope/rebuild"),
        ("get", "/api/v1/jobs/999"),
        ("get", "/api/v1/jobs/999/log"),
        ("post", "/api/v1/jobs/999/cancel"),
        ("get", "/api/v1/jobs/abc"),
        ("get", "/api/v1/credentials/nope"),
        ("patch", "/api/v1/credentials/nope"),
        ("delete", "/api/v1/credentials/nope"),
        ("get", "/api/v1/no/such/endpoint"),
        ("get", "/api/v1/"),
    ],
)
def test_unknown_names_ids_and_routes_are_json_404s(api, method, url):
    response = getattr(api, method)(url, json={"apt": []})
    assert response.status_code == 404
    assert response.is_json and response.get_json()["error"]


@pytest.mark.parametrize(
    "method, url, allowed",
    [
        ("put", "/api/v1/specs/demo", {"GET", "PATCH", "DELETE"}),
        ("post", "/api/v1/specs/demo", {"GET", "PATCH", "DELETE"}),
        ("delete", "/api/v1/specs", {"GET", "POST"}),
        ("get", "/api/v1/specs/demo/rebuild", {"POST"}),
        ("post", "/api/v1/jobs/1", {"GET"}),
        ("get", "/api/v1/jobs/1/cancel", {"POST"}),
        ("put", "/api/v1/credentials/hub", {"GET", "PATCH", "DELETE"}),
    ],
)
def test_wrong_method_is_a_json_405(api, method, url, allowed):
    response = getattr(api, method)(url, json={})
    assert response.status_code == 405
    assert response.is_json and response.get_json()["error"]
    assert set(response.headers["Allow"].split(", ")) == allowed


def test_patch_without_effective_change_starts_no_job(api, queued_rq_jobs):
    create(api)
    before = queued_rq_jobs()
    # The same packages in another order and spelling normalise to the same spec.
    response = api.patch("/api/v1/specs/demo", json={"name": "demo", "apt": ["curl", ""], "pip": ["Requests"]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["job"] is None
    assert set(body) == SPEC_KEYS | {"job"}
    assert job_count() == 1
    assert queued_rq_jobs() == before


def test_patch_with_a_change_starts_the_next_revision(api, queued_rq_jobs):
    first = create(api)["job"]
    response = api.patch("/api/v1/specs/demo", json={"pip": ["requests", "numpy>=2"]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["pip"] == ["numpy>=2", "requests"]
    assert body["apt"] == ["curl"]  # fields left out keep their values
    assert body["job"]["revision"] == 2
    assert body["job"]["hash"] != first["hash"]
    assert body["job"]["status"] == JobStatus.QUEUED
    assert rq_job_id(body['job']['id']) in queued_rq_jobs()


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"name": "renamed"}, {("name", None)}),
        ({"pip": ["requests", "--index-url http://x"]}, {("pip", 2)}),
        ({"base_image": "debian\nRUN id"}, {("base_image", None)}),
        ({"apt": "curl"}, {("apt", None)}),
        ({"name": "renamed", "conda": ["numpy[url=http://x]"]}, {("name", None), ("conda", 1)}),
    ],
)
def test_patch_refuses_invalid_changes_and_keeps_the_spec(api, patch, expected):
    create(api)
    response = api.patch("/api/v1/specs/demo", json=patch)
    assert error_locations(response) == expected
    assert api.get("/api/v1/specs/demo").get_json()["pip"] == ["requests"]
    assert job_count() == 1


def test_patch_sets_and_clears_the_pull_secret(api):
    create(api)
    api.post("/api/v1/credentials", json={"name": "hub", "registry": "ghcr.io", "username": "u", "password": PASSWORD})
    body = api.patch("/api/v1/specs/demo", json={"pull_secret": "hub"}).get_json()
    assert body["pull_secret"] == "hub" and body["job"]["revision"] == 2
    assert body["job"] is not None
    snapshot = api.get(f"/api/v1/jobs/{body['job']['id']}").get_json()["spec_snapshot"]
    assert snapshot["pull_secret"] == "hub"
    body = api.patch("/api/v1/specs/demo", json={"pull_secret": None}).get_json()
    assert body["pull_secret"] is None and body["job"]["revision"] == 3


def test_patch_sets_changes_and_clears_the_test_command(api):
    first = create(api)["job"]
    body = api.patch("/api/v1/specs/demo", json={"test_command": "python3 -c 'import requests'"}).get_json()
    assert body["test_command"] == "python3 -c 'import requests'"
    assert body["job"]["revision"] == 2 and body["job"]["hash"] != first["hash"]  # part of the input hash
    snapshot = api.get(f"/api/v1/jobs/{body['job']['id']}").get_json()["spec_snapshot"]
    assert snapshot["test_command"] == "python3 -c 'import requests'"
    assert snapshot["containerfile"].endswith("\n# python3 -c 'import requests'\n")
    assert api.patch("/api/v1/specs/demo", json={"test_command": "python3 -c 'import requests'"}).get_json()["job"] is None
    body = api.patch("/api/v1/specs/demo", json={"test_command": None}).get_json()
    assert body["test_command"] is None and body["job"]["hash"] == first["hash"]


def test_delete_spec_then_it_is_gone(api):
    job_id = create(api)["job"]["id"]
    db.session.add(LogChunk(job_id=job_id, seq=0, text="step 1\n"))
    db.session.commit()
    response = api.delete("/api/v1/specs/demo")
    assert response.status_code == 204 and response.data == b""
    assert api.get("/api/v1/specs/demo").status_code == 404
    assert api.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert db.session.scalar(select(func.count(LogChunk.id))) == 0
    assert api.delete("/api/v1/specs/demo").status_code == 404


# Jobs

def test_rebuild_queues_the_same_spec_again(api, queued_rq_jobs):
    first = create(api)["job"]
    response = api.post("/api/v1/specs/demo/rebuild")
    assert response.status_code == 202
    job = response.get_json()
    assert JOB_KEYS <= set(job)
    assert (job["revision"], job["hash"], job["status"]) == (2, first["hash"], JobStatus.QUEUED)
    assert queued_rq_jobs()[-1] == rq_job_id(job['id'])


def test_spec_jobs_are_paginated_newest_first(api):
    create(api)
    for _ in range(4):
        api.post("/api/v1/specs/demo/rebuild")

    page1 = api.get("/api/v1/specs/demo/jobs?per_page=2").get_json()
    assert [j["revision"] for j in page1["jobs"]] == [5, 4]
    assert (page1["page"], page1["per_page"], page1["total"], page1["pages"]) == (1, 2, 5, 3)
    page3 = api.get("/api/v1/specs/demo/jobs?per_page=2&page=3").get_json()
    assert [j["revision"] for j in page3["jobs"]] == [1]
    assert api.get("/api/v1/specs/demo/jobs?per_page=2&page=4").get_json()["jobs"] == []
    everything = api.get("/api/v1/specs/demo/jobs").get_json()
    assert [j["revision"] for j in everything["jobs"]] == [5, 4, 3, 2, 1]
    assert all(JOB_KEYS <= set(j) and "spec_snapshot" not in j for j in everything["jobs"])
    assert api.get("/api/v1/specs/demo/jobs?per_page=1000").get_json()["per_page"] == 100


@pytest.mark.parametrize("query, field", [("page=0", "page"), ("page=abc", "page"), ("per_page=0", "per_page"), ("per_page=-5", "per_page")])
def test_bad_pagination_is_a_422(api, query, field):
    create(api)
    response = api.get(f"/api/v1/specs/demo/jobs?{query}")
    assert error_locations(response) == {(field, None)}


def test_get_job_includes_the_spec_snapshot(api):
    job_id = create(api)["job"]["id"]
    job = api.get(f"/api/v1/jobs/{job_id}").get_json()
    assert set(job) >= JOB_KEYS | {"spec_snapshot"}
    assert job["spec_snapshot"]["apt"] == ["curl"]
    assert job["spec_snapshot"]["containerfile"].startswith("FROM debian:bookworm")
    assert job["started_at"] is None and job["finished_at"] is None
    assert ISO_UTC.match(job["created_at"]) and ISO_UTC.match(job["updated_at"])


def test_job_log_pages_by_chunk_offset_and_strips_ansi(api):
    job_id = create(api)["job"]["id"]
    for seq, text in enumerate(["STEP 1/2: FROM debian\n", "\x1b[31mred\x1b[0m line\n", "STEP 2/2: RUN\n"]):
        db.session.add(LogChunk(job_id=job_id, seq=seq, text=text))
    db.session.commit()

    first = api.get(f"/api/v1/jobs/{job_id}/log").get_json()
    assert first == {"text": "STEP 1/2: FROM debian\nred line\nSTEP 2/2: RUN\n", "next_offset": 3, "finished": False}
    assert api.get(f"/api/v1/jobs/{job_id}/log?offset=1").get_json()["text"] == "red line\nSTEP 2/2: RUN\n"
    nothing_new = api.get(f"/api/v1/jobs/{job_id}/log?offset=3").get_json()
    assert nothing_new == {"text": "", "next_offset": 3, "finished": False}

    db.session.add(LogChunk(job_id=job_id, seq=3, text="done\n"))
    job = db.session.get(BuildJob, job_id)
    job.status, job.finished_at = JobStatus.SUCCEEDED, utcnow()
    db.session.commit()
    last = api.get(f"/api/v1/jobs/{job_id}/log?offset=3").get_json()
    assert last == {"text": "done\n", "next_offset": 4, "finished": True}


def test_job_log_is_not_finished_until_every_chunk_was_read(api):
    job_id = create(api)["job"]["id"]
    db.session.add_all(LogChunk(job_id=job_id, seq=seq, text=f"{seq}\n") for seq in range(501))
    db.session.get(BuildJob, job_id).status = JobStatus.FAILED
    db.session.commit()
    first = api.get(f"/api/v1/jobs/{job_id}/log").get_json()
    assert (first["next_offset"], first["finished"]) == (500, False)
    rest = api.get(f"/api/v1/jobs/{job_id}/log?offset=500").get_json()
    assert rest == {"text": "500\n", "next_offset": 501, "finished": True}


def test_cancel_a_queued_job_takes_it_off_the_queue(api, queued_rq_jobs):
    job_id = create(api)["job"]["id"]
    response = api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert response.get_json()["status"] == JobStatus.CANCELLED
    assert response.get_json()["finished_at"] is not None
    assert rq_job_id(job_id) not in queued_rq_jobs()
    assert api.get("/api/v1/specs/demo").get_json()["status"] == JobStatus.CANCELLED
    again = api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already finished" in again.get_json()["error"]


def test_cancel_a_running_job_asks_the_worker_to_stop_it(api):
    job_id = create(api)["job"]["id"]
    job = db.session.get(BuildJob, job_id)
    job.status, job.started_at = JobStatus.RUNNING, utcnow()
    db.session.commit()
    response = api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert response.get_json()["status"] == JobStatus.RUNNING
    db.session.refresh(job)
    assert job.cancel_requested


@pytest.mark.parametrize("offset", ["-1", "x", "1.5"])
def test_bad_log_offset_is_a_422(api, offset):
    job_id = create(api)["job"]["id"]
    assert error_locations(api.get(f"/api/v1/jobs/{job_id}/log?offset={offset}")) == {("offset", None)}


# Registry credentials

class Recorder:
    """The api client, remembering every answer so none can be checked for the password."""

    def __init__(self, api):
        self.api, self.bodies = api, []

    def __getattr__(self, method):
        def call(url, **kw):
            response = getattr(self.api, method)(url, **kw)
            self.bodies.append(response.get_data(as_text=True))
            return response

        return call


def test_credentials_crud_never_shows_the_password(api):
    from app.credentials.service import credential_password

    calls = Recorder(api)
    response = calls.post("/api/v1/credentials", json={"name": "hub", "registry": "ghcr.io", "username": "bot", "password": PASSWORD})
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"name", "registry", "username", "created_at", "updated_at"}
    assert (body["name"], body["registry"], body["username"]) == ("hub", "ghcr.io", "bot")

    stored = db.session.scalar(select(RegistryCredential).where(RegistryCredential.name == "hub"))
    assert PASSWORD not in stored.password_encrypted
    assert credential_password(stored) == PASSWORD

    assert [c["name"] for c in calls.get("/api/v1/credentials").get_json()["credentials"]] == ["hub"]
    assert calls.get("/api/v1/credentials/hub").get_json()["username"] == "bot"

    response = calls.patch("/api/v1/credentials/hub", json={"username": "robot", "registry": "ghcr.io:443"})
    assert response.status_code == 200
    assert (response.get_json()["username"], response.get_json()["registry"]) == ("robot", "ghcr.io:443")
    db.session.refresh(stored)
    assert credential_password(stored) == PASSWORD  # left out: kept

    new_password = PASSWORD + "-rotated"
    assert calls.patch("/api/v1/credentials/hub", json={"password": new_password}).status_code == 200
    db.session.refresh(stored)
    assert credential_password(stored) == new_password
    assert new_password not in stored.password_encrypted

    assert error_locations(calls.patch("/api/v1/credentials/hub", json={"name": "other"})) == {("name", None)}
    assert error_locations(calls.patch("/api/v1/credentials/hub", json={"password": ""})) == {("password", None)}
    assert error_locations(calls.post("/api/v1/credentials", json={"name": "hub", "registry": "ghcr.io", "username": "x", "password": PASSWORD})) == {("name", None)}

    assert calls.delete("/api/v1/credentials/hub").status_code == 204
    assert calls.get("/api/v1/credentials/hub").status_code == 404
    assert all(PASSWORD not in text for text in calls.bodies)


@pytest.mark.parametrize(
    "payload, expected",
    [
        ({"name": "Bad Name", "registry": "ghcr.io", "username": "u", "password": PASSWORD}, {("name", None)}),
        ({"name": "ok", "registry": "http://ghcr.io/x", "username": "u", "password": PASSWORD}, {("registry", None)}),
        ({"name": "ok", "registry": "ghcr.io", "username": "a b", "password": PASSWORD}, {("username", None)}),
        ({"name": "ok", "registry": "ghcr.io", "username": "u"}, {("password", None)}),
        ({"name": "ok", "registry": "ghcr.io", "username": "u", "password": PASSWORD + "\n"}, {("password", None)}),
        ({"name": "ok", "registry": "ghcr.io", "username": "u", "password": 1234}, {("password", None)}),
        ({"name": "ok", "registry": "ghcr.io", "username": "u", "password": PASSWORD, "token": "x"}, {("token", None)}),
        ({}, {("name", None), ("registry", None), ("username", None), ("password", None)}),
    ],
)
def test_invalid_credentials_are_refused(api, payload, expected):
    response = api.post("/api/v1/credentials", json=payload)
    assert error_locations(response) == expected
    assert PASSWORD not in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(RegistryCredential.id))) == 0


def test_a_credential_in_use_cannot_be_deleted(api):
    api.post("/api/v1/credentials", json={"name": "hub", "registry": "ghcr.io", "username": "u", "password": PASSWORD})
    create(api, name="one", pull_secret="hub")
    create(api, name="two", pull_secret="hub")
    create(api, name="three")
    response = api.delete("/api/v1/credentials/hub")
    assert response.status_code == 409
    assert sorted(response.get_json()["specs"]) == ["one", "two"]
    assert "one" in response.get_json()["error"]
    assert api.get("/api/v1/credentials/hub").status_code == 200
