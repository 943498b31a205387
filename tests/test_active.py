"""The active revision and rollback: Activate (API and pages), auto-activation after a
build, and `latest` re-tagged in the registry.

The registry here is a small HTTP server speaking the manifest part of the registry API
(GET and PUT of manifests by tag, with their media type and digest), so the real
RegistryClient does the re-tag over HTTP; tests/integration/test_activate_in_registry.py does it
against the real registry.
"""
import hashlib
import json
import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from app.builds.logs import read_log
from app.extensions import db
from app.models import ACTIVATION_WAIT_SECONDS, BuildJob, ImageSpec, JobStatus, utcnow
from app.revisions.active import active_revision_changed, after_build_succeeded

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def registry(app):
    """A plain-HTTP registry; `state.manifests[(repository, tag)] = (bytes, media type)`.
    The app pushes to it as REGISTRY."""
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    state = SimpleNamespace(manifests={}, puts=[], refuse_puts=False)

    def digest(body):
        return "sha256:" + hashlib.sha256(body).hexdigest()

    @Request.application
    def serve(request):
        if request.path == "/v2/":
            return Response("{}", 200)
        repository, _, reference = request.path[len("/v2/"):].partition("/manifests/")
        if request.method == "PUT":
            if state.refuse_puts:
                return Response('{"errors": [{"code": "DENIED"}]}', 500)
            body = request.get_data()
            state.puts.append((repository, reference, request.content_type))
            state.manifests[(repository, reference)] = (body, request.content_type)
            return Response("", 201, {"Docker-Content-Digest": digest(body)})
        found = state.manifests.get((repository, reference))
        if found is None:
            return Response('{"errors": [{"code": "MANIFEST_UNKNOWN"}]}', 404)
        body, media_type = found
        return Response(body, 200, {"Content-Type": media_type, "Docker-Content-Digest": digest(body)})

    server = make_server("127.0.0.1", 0, serve, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_port}"
    app.config.update(REGISTRY=f"{host}/imagebuilder", REGISTRY_TLS_VERIFY=False, REGISTRY_USERNAME=None,
                      REGISTRY_PUSH_LATEST=True)
    state.host = host
    state.latest = lambda name: digest(state.manifests[(f"imagebuilder/{name}", "latest")][0])
    yield state
    server.shutdown()


def make_spec(registry, statuses, name="demo", active=None, auto_activate=True):
    """A spec with one job per status (r1 first); each succeeded one pushed to the
    registry, odd revisions as Docker v2 manifests, even ones as OCI manifests."""
    spec = ImageSpec(name=name, base_image="debian:bookworm", apt=[], pip=[], conda=[], auto_activate=auto_activate)
    db.session.add(spec)
    db.session.flush()
    for revision, status in enumerate(statuses, start=1):
        job = BuildJob(spec_id=spec.id, revision=revision, input_hash=f"{revision:08x}", status=status,
                       spec_snapshot={})
        if status == JobStatus.SUCCEEDED:
            media_type = DOCKER_V2 if revision % 2 else OCI
            body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "config": {"size": revision},
                               "layers": []}).encode()
            registry.manifests[(f"imagebuilder/{name}", job.tag)] = (body, media_type)
            job.image = f"{registry.host}/imagebuilder/{name}:{job.tag}"
            job.digest = "sha256:" + hashlib.sha256(body).hexdigest()
        db.session.add(job)
    spec.active_revision = active
    db.session.commit()
    return spec


def job_of(spec, revision) -> BuildJob:
    return db.session.scalar(select(BuildJob).where(BuildJob.spec_id == spec.id, BuildJob.revision == revision))


@pytest.fixture
def signals():
    sent = []

    def receive(spec, job, previous, moved_at):
        sent.append((spec.name, job.revision, previous))

    active_revision_changed.connect(receive)
    yield sent
    active_revision_changed.disconnect(receive)


# -- the API -----------------------------------------------------------------------------


def test_activating_an_older_revision_moves_latest_to_its_image(api, registry, signals):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=2)
    r1 = job_of(spec, 1)

    response = api.post("/api/v1/specs/demo/activate", json={"revision": 1})

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["active_revision"], body["image"], body["auto_activate"]) == (1, r1.image, True)
    assert registry.latest("demo") == r1.digest
    # The manifest's own media type, so the registry serves the same bytes and digest.
    assert registry.puts == [("imagebuilder/demo", "latest", DOCKER_V2)]
    assert signals == [("demo", 1, 2)]
    jobs = api.get("/api/v1/specs/demo/jobs").get_json()["jobs"]
    assert [(job["revision"], job["active"]) for job in jobs] == [(2, False), (1, True)]
    assert api.get(f"/api/v1/jobs/{r1.id}").get_json()["active"] is True


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_revision_that_did_not_succeed_cannot_be_activated(api, registry, signals, status):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, status], active=1)
    api.post("/api/v1/specs/demo/activate", json={"revision": 1})
    puts = list(registry.puts)

    response = api.post("/api/v1/specs/demo/activate", json={"revision": 2})

    assert response.status_code == 409
    assert response.get_json() == {"error": f"r2 is {status}: only a succeeded revision can be activated."}
    db.session.refresh(spec)
    assert spec.active_revision == 1 and registry.puts == puts and signals == []


def test_a_revision_whose_image_the_registry_no_longer_has_cannot_be_activated(api, registry):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=2)
    del registry.manifests[("imagebuilder/demo", job_of(spec, 1).tag)]

    response = api.post("/api/v1/specs/demo/activate", json={"revision": 1})

    assert response.status_code == 409
    assert f"no longer has imagebuilder/demo:{job_of(spec, 1).tag}" in response.get_json()["error"]
    db.session.refresh(spec)
    assert spec.active_revision == 2 and registry.puts == []


def test_a_tag_that_now_holds_another_image_is_not_activated(api, registry):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=2)
    key = ("imagebuilder/demo", job_of(spec, 1).tag)
    registry.manifests[key] = (b'{"schemaVersion": 2, "layers": []}', OCI)

    response = api.post("/api/v1/specs/demo/activate", json={"revision": 1})

    assert response.status_code == 409
    assert f"not {job_of(spec, 1).digest}" in response.get_json()["error"]
    assert registry.puts == []


def test_a_registry_refusing_the_tag_leaves_the_active_revision(api, registry):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=2)
    registry.refuse_puts = True

    response = api.post("/api/v1/specs/demo/activate", json={"revision": 1})

    assert response.status_code == 409
    assert "answered HTTP 500 tagging imagebuilder/demo:latest" in response.get_json()["error"]
    db.session.refresh(spec)
    assert spec.active_revision == 2


def test_an_unreachable_registry_is_a_409_with_the_reason(api, registry, app):
    make_spec(registry, [JobStatus.SUCCEEDED], active=None)
    registry_host = registry.host
    registry.host = "127.0.0.1:9"  # nothing listens on the discard port
    spec = db.session.scalar(select(ImageSpec))
    job_of(spec, 1).image = job_of(spec, 1).image.replace(registry_host, registry.host)
    db.session.commit()

    response = api.post("/api/v1/specs/demo/activate", json={"revision": 1})

    assert response.status_code == 409
    assert response.get_json()["error"] == "Could not reach registry 127.0.0.1:9: ConnectionError."


def test_with_push_latest_off_nothing_moves_in_the_registry(api, registry, app):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=2)
    app.config["REGISTRY_PUSH_LATEST"] = False

    response = api.post("/api/v1/specs/demo/activate", json={"revision": 1})

    assert response.status_code == 200
    assert response.get_json()["active_revision"] == 1
    assert registry.puts == [] and ("imagebuilder/demo", "latest") not in registry.manifests
    # The registry is still asked whether it has the image.
    del registry.manifests[("imagebuilder/demo", job_of(spec, 2).tag)]
    assert api.post("/api/v1/specs/demo/activate", json={"revision": 2}).status_code == 409


def test_unknown_spec_or_revision_is_404(api, registry):
    make_spec(registry, [JobStatus.SUCCEEDED])
    missing = api.post("/api/v1/specs/demo/activate", json={"revision": 7})
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "demo has no revision r7."}
    assert api.post("/api/v1/specs/nope/activate", json={"revision": 1}).status_code == 404


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({}, 422, "Required: an integer."),
        ({"revision": "1"}, 422, "Required: an integer."),
        ({"revision": True}, 422, "Required: an integer."),
        ({"revision": 1.5}, 422, "Required: an integer."),
        ({"revision": None}, 422, "Required: an integer."),
        ({"revision": 0}, 422, "Must be between 1 and 2147483647."),
        ({"revision": -3}, 422, "Must be between 1 and 2147483647."),
        ({"revision": 2**31}, 422, "Must be between 1 and 2147483647."),
        ({"revision": 10**30}, 422, "Must be between 1 and 2147483647."),
        ({"revision": 1, "force": True}, 422, "Unknown field; the only field is revision."),
        ([1], 400, "The request body must be a JSON object."),
    ],
)
def test_junk_is_refused_with_the_reason(api, registry, body, status, message):
    make_spec(registry, [JobStatus.SUCCEEDED])
    response = api.post("/api/v1/specs/demo/activate", json=body)
    assert response.status_code == status
    answer = response.get_json()
    assert (answer["errors"][0]["message"] if status == 422 else answer["error"]) == message


def test_auto_activate_is_set_in_create_and_patch_without_a_build(api, registry, queued_rq_jobs):
    created = api.post("/api/v1/specs", json={"name": "manual", "base_image": "debian:bookworm",
                                              "auto_activate": False})
    assert created.status_code == 201 and created.get_json()["auto_activate"] is False
    assert api.post("/api/v1/specs", json={"name": "auto", "base_image": "debian:bookworm"}).get_json()[
        "auto_activate"] is True

    patched = api.patch("/api/v1/specs/manual", json={"auto_activate": True})

    assert patched.status_code == 200
    assert patched.get_json()["auto_activate"] is True and patched.get_json()["job"] is None
    assert len(queued_rq_jobs()) == 2
    wrong = api.patch("/api/v1/specs/manual", json={"auto_activate": "yes"})
    assert wrong.status_code == 422
    assert wrong.get_json()["errors"] == [{"field": "auto_activate", "line": None, "message": "Must be true or false."}]


# -- after a build -------------------------------------------------------------------------


def test_a_succeeded_build_becomes_active_and_moves_latest(registry, signals):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=1)
    r2 = job_of(spec, 2)

    assert after_build_succeeded(r2.id) is True

    assert spec.active_revision == 2 and registry.latest("demo") == r2.digest
    assert registry.puts == [("imagebuilder/demo", "latest", OCI)]
    assert signals == [("demo", 2, 1)]
    assert read_log(r2.id)[0] == f"==> r2 is the active revision; {registry.host}/imagebuilder/demo:latest is {r2.digest}.\n"


def test_with_auto_activate_off_a_succeeded_build_waits_for_an_admin(registry, signals):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=1, auto_activate=False)

    assert after_build_succeeded(job_of(spec, 2).id) is False

    assert spec.active_revision == 1 and registry.puts == [] and signals == []
    assert read_log(job_of(spec, 2).id)[0] == (
        "==> r2 waits for an admin to activate it ('Activate new builds automatically' is off); "
        "the active revision stays r1.\n"
    )


def test_a_build_that_cannot_move_latest_stays_succeeded_and_its_log_says_why(registry, signals):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=1)
    registry.refuse_puts = True
    r2 = job_of(spec, 2)

    assert after_build_succeeded(r2.id) is False

    db.session.refresh(r2)
    assert r2.status == JobStatus.SUCCEEDED and spec.active_revision == 1 and signals == []
    assert read_log(r2.id)[0] == (
        f"==> r2 succeeded but is not active: Registry {registry.host} answered HTTP 500 tagging "
        "imagebuilder/demo:latest. The active revision stays r1; activate r2 on the Jobs tab once the "
        "registry has it.\n"
    )


def test_an_older_build_finishing_late_does_not_replace_a_newer_active_one(registry):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=2)
    assert after_build_succeeded(job_of(spec, 1).id) is False
    assert spec.active_revision == 2 and registry.puts == []


# -- the pages -----------------------------------------------------------------------------


def test_the_jobs_tab_marks_the_active_row_and_offers_activate_for_succeeded_ones(client, auth, registry):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.SUCCEEDED], active=3)

    page = client.get("/specs/demo/edit?tab=jobs").get_data(as_text=True)

    rows = {revision: _element(page, f"job-row-{job_of(spec, revision).id}") for revision in (1, 2, 3)}
    assert 'class="active-revision"' in rows[3] and "active-marker" in rows[3] and "Activate" not in rows[3]
    assert 'name="revision" value="1"' in rows[1] and ">Activate</button>" in rows[1]
    assert "Activate" not in rows[2] and "active-marker" not in rows[2]


def test_activate_from_the_jobs_tab_comes_back_to_it(client, auth, registry):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=2)
    back = "/specs/demo/edit?tab=jobs"

    response = client.post("/specs/demo/activate", data={"revision": "1", "next": back})

    assert response.status_code == 302 and response.headers["Location"] == back
    assert "demo r1 is the active revision now." in client.get(back).get_data(as_text=True)
    assert registry.latest("demo") == job_of(spec, 1).digest
    listed = client.get("/").get_data(as_text=True)
    assert f'href="/jobs/{job_of(spec, 1).id}" title="The active revision">r1</a>' in listed
    assert f'data-copy="{job_of(spec, 1).image}"' in listed


def test_activate_on_the_job_page_says_why_it_was_refused(client, auth, registry):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=2)
    r1 = job_of(spec, 1)
    page = client.get(f"/jobs/{r1.id}").get_data(as_text=True)
    assert f'<input type="hidden" name="next" value="/jobs/{r1.id}">' in page
    del registry.manifests[("imagebuilder/demo", r1.tag)]

    response = client.post("/specs/demo/activate", data={"revision": "1", "next": f"/jobs/{r1.id}"},
                           follow_redirects=True)

    body = response.get_data(as_text=True)
    assert "demo r1 was not activated: Registry" in body and "no longer has" in body
    assert "active-marker" in client.get(f"/jobs/{job_of(spec, 2).id}").get_data(as_text=True)


@pytest.mark.parametrize("revision", ["", "x", "0", "7", "99999999999"])
def test_activate_page_with_an_unknown_or_junk_revision_is_404(client, auth, registry, revision):
    make_spec(registry, [JobStatus.SUCCEEDED])
    assert client.post("/specs/demo/activate", data={"revision": revision}).status_code == 404


def test_activate_goes_back_only_to_this_site(client, auth, registry):
    make_spec(registry, [JobStatus.SUCCEEDED])
    response = client.post("/specs/demo/activate", data={"revision": "1", "next": "https://evil.example/"})
    assert response.headers["Location"] == "/specs/demo/edit?tab=jobs"


def test_the_form_sets_activate_new_builds_automatically(client, auth, registry, queued_rq_jobs):
    new_page = client.get("/specs/new").get_data(as_text=True)
    assert 'name="auto_activate" value="1"' in new_page and _checkbox_checked(new_page)
    form = {"name": "demo", "base_image": "debian:bookworm", "apt": "", "pip": "", "conda": ""}
    client.post("/specs/new", data=form)  # the box unticked
    spec = db.session.scalar(select(ImageSpec))
    assert spec.auto_activate is False

    response = client.post("/specs/demo/edit", data={**form, "auto_activate": "1"}, follow_redirects=True)

    assert "Saved; the build inputs did not change, so no new build started." in response.get_data(as_text=True)
    db.session.refresh(spec)
    assert spec.auto_activate is True and len(queued_rq_jobs()) == 1
    assert _checkbox_checked(client.get("/specs/demo/edit").get_data(as_text=True))


def _checkbox_checked(page: str) -> bool:
    start = page.index('id="auto_activate"')
    return "checked" in page[start:page.index(">", start)]


def _element(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}"')
    return page[start:page.index("</tr>", start)]


def test_pages_keep_polling_a_just_succeeded_build_until_it_is_active(client, auth, registry):
    spec = make_spec(registry, [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], active=1)
    r2 = job_of(spec, 2)
    r2.finished_at = utcnow()
    db.session.commit()

    assert 'hx-trigger="every 1s"' in client.get("/specs/demo/row").get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in client.get(f"/jobs/{r2.id}/row").get_data(as_text=True)
    # The log's poller asks again (a long poll) while the activation may still add its line.
    assert 'hx-trigger="load, log:again"' in client.get(f"/jobs/{r2.id}/log?offset=0").get_data(as_text=True)

    after_build_succeeded(r2.id)

    assert "hx-trigger" not in client.get("/specs/demo/row").get_data(as_text=True)
    assert "hx-trigger" not in client.get(f"/jobs/{r2.id}/row").get_data(as_text=True)
    log_update = client.get(f"/jobs/{r2.id}/log?offset=0").get_data(as_text=True)
    assert "r2 is the active revision" in log_update
    # Long after its build, a revision that never became active is not waited for.
    r1 = job_of(spec, 1)
    r1.finished_at = utcnow() - timedelta(seconds=ACTIVATION_WAIT_SECONDS + 1)
    spec.active_revision = None
    db.session.commit()
    assert r1.awaits_activation is False
