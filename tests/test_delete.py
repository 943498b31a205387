"""Deleting a spec (its builds cancelled first; nothing left in the database, Redis or
Podman; pushed images only when asked) and pruning old build images.

Fakes stand only at the boundary: a Podman client and a registry client. The database,
Redis and RQ are real."""
import threading
import time
from types import SimpleNamespace

import pytest
from podman.errors import APIError, ImageNotFound
from sqlalchemy import func, select

from app.builds import maintenance
from app.builds.control import claim_job
from app.builds.logs import append_log_chunk
from app.builds.queue import build_queue, rq_job_id
from app.builds.registry import RegistryError
from app.builds.runner import finish
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, LogChunk
from app.specs import service
from app.specs.service import SpecNotDeleted, create_spec, delete_spec, update_spec

REG = "127.0.0.1:5000/imagebuilder"


# -- the boundary -----------------------------------------------------------------------


class FakeImages:
    """Podman's image store as its API behaves: removing a name untags it while the image
    has other names, and removes the image with its last one."""

    def __init__(self, owner):
        self.owner = owner

    def list(self, **_):
        return [SimpleNamespace(id=image_id, attrs={"Names": list(names)}) for image_id, names in self.owner.images_by_id.items()]

    def remove(self, name, force=None):
        if self.owner.down:
            raise APIError("http+unix://podman/images", explanation="connection refused")
        if name in self.owner.in_use:
            raise APIError("http+unix://podman/images", explanation="image is in use by a container")
        for image_id, names in self.owner.images_by_id.items():
            if name in names:
                names.remove(name)
                if not names:
                    del self.owner.images_by_id[image_id]
                self.owner.removed.append(name)
                return [{"Untagged": name}]
        raise ImageNotFound(name)

    def prune(self, filters=None, **_):
        self.owner.prunes.append(filters)
        return {"ImagesDeleted": [{"Deleted": "d1"}, {"Deleted": "d2"}], "SpaceReclaimed": 2048}


class FakePodman:
    def __init__(self, images):
        self.images_by_id = images
        self.removed, self.prunes, self.in_use = [], [], set()
        self.down = False

    def client(self, **_):
        owner = self

        class Client:
            images = FakeImages(owner)

            def df(self):
                if owner.down:
                    raise APIError("http+unix://podman/system/df", explanation="connection refused")
                listed = [{"UniqueSize": 100, "Containers": 0} for _ in owner.images_by_id]
                return {"Images": listed, "Containers": [], "Volumes": []}

            def close(self):
                pass

        return Client()


class FakeRegistry:
    """The registry's tags of each repository; delete_tag drops every tag on the digest."""

    repositories: dict = {}
    deleted: list = []
    refuse = None

    def __init__(self, host, username=None, password=None, tls_verify=True, timeout=30):
        self.host = host

    def tags(self, repository):
        return list(self.repositories.get(repository, {}))

    def delete_tag(self, repository, tag):
        if self.refuse:
            raise RegistryError(self.refuse)
        tags = self.repositories.get(repository, {})
        if tag not in tags:
            return False
        digest = tags[tag]
        for name in [t for t, d in tags.items() if d == digest]:
            del tags[name]
        self.deleted.append(f"{repository}:{tag}")
        return True


@pytest.fixture
def podman(app, monkeypatch):
    fake = FakePodman({})
    monkeypatch.setattr(maintenance, "PodmanClient", fake.client)
    return fake


@pytest.fixture
def registry(monkeypatch):
    FakeRegistry.repositories = {}
    FakeRegistry.deleted = []
    FakeRegistry.refuse = None
    monkeypatch.setattr(maintenance, "RegistryClient", FakeRegistry)
    return FakeRegistry


def make_spec(name="demo", apt="jq", pip="six"):
    outcome = create_spec({"name": name, "base_image": "debian:bookworm", "apt": apt, "pip": pip, "conda": ""})
    assert outcome.ok, outcome.result.errors
    return outcome.spec, outcome.job


def change(spec, pip):
    outcome = update_spec(spec, {"base_image": spec.base_image, "apt": spec.apt, "pip": pip, "conda": spec.conda})
    assert outcome.ok and outcome.job
    return outcome.job


def succeed(job):
    job.status = JobStatus.SUCCEEDED
    job.image = f"{REG}/{job.spec.name}:{job.tag}"
    db.session.commit()


def rq_keys(redis, job_id):
    return [k.decode() for k in redis.scan_iter(f"*{rq_job_id(job_id)}*")] + [
        k.decode() for k in redis.scan_iter("rq:*") if rq_job_id(job_id).encode() in _members(redis, k)
    ]


def _members(redis, key):
    kind = redis.type(key).decode()
    if kind == "list":
        return b" ".join(redis.lrange(key, 0, -1))
    if kind == "zset":
        return b" ".join(redis.zrange(key, 0, -1))
    return b""


def counts():
    return tuple(db.session.scalar(select(func.count(model.id))) for model in (ImageSpec, BuildJob, LogChunk))


# -- deleting a spec --------------------------------------------------------------------


def test_the_delete_dialog_offers_to_delete_pushed_images(client, auth):
    make_spec()
    for url in ("/", "/specs/demo/edit"):
        page = client.get(url).get_data(as_text=True)
        assert '<dialog id="delete-dialog"' in page
        assert 'type="checkbox" name="delete_pushed_images"' in page
        assert "Images already pushed to the registry stay there unless you tick the box." in page


def test_delete_leaves_nothing_in_the_database_redis_or_podman(client, auth, private_redis, podman, registry):
    spec, first = make_spec()
    succeed(first)
    second = change(spec, "six\nidna")
    append_log_chunk(second, "building\n")
    db.session.commit()
    assert rq_keys(private_redis, second.id)
    queue = build_queue()  # the first job's RQ entry as RQ leaves a finished one
    finished = queue.fetch_job(rq_job_id(first.id))
    queue.remove(finished)
    finished.set_status("finished")
    queue.finished_job_registry.add(finished, 3600)
    podman.images_by_id.update({
        "i1": [f"{REG}/demo:{first.tag}", f"{REG}/demo:latest"],
        "i2": [f"{REG}/demo-two:r1-aaaa", f"{REG}/demo:{second.tag}"],  # identical inputs, one image
        "base": ["localhost/debian:bookworm"],
    })
    registry.repositories = {"imagebuilder/demo": {first.tag: "sha256:1", "latest": "sha256:1"}}
    job_ids = [first.id, second.id]

    response = client.post("/specs/demo/delete", follow_redirects=True)

    body = response.get_data(as_text=True)
    assert "Deleted demo with its build jobs and logs. Its pushed images stay in the registry." in body
    assert counts() == (0, 0, 0)
    assert [rq_keys(private_redis, job_id) for job_id in job_ids] == [[], []]
    assert podman.images_by_id == {"i2": [f"{REG}/demo-two:r1-aaaa"], "base": ["localhost/debian:bookworm"]}
    assert registry.deleted == [] and registry.repositories["imagebuilder/demo"]


def test_delete_waits_for_the_running_build_to_stop_before_removing_its_rows(app, podman, registry):
    spec, job = make_spec()
    job_id = job.id
    assert claim_job(job_id, "worker-1")
    seen = {}

    def runner():
        """What the runner does on a cancel: notice it, stop the build, write the final state."""
        with app.app_context():
            deadline = time.monotonic() + 10
            while not db.session.scalar(select(BuildJob.cancel_requested).where(BuildJob.id == job_id)):
                assert time.monotonic() < deadline
                db.session.commit()
                time.sleep(0.05)
            time.sleep(0.5)  # stopping the build in Podman
            seen["final_state_written"] = finish(job_id, JobStatus.CANCELLED, "Cancelled by an admin.")
            db.session.remove()

    thread = threading.Thread(target=runner)
    thread.start()
    outcome = delete_spec(spec)
    thread.join()

    assert seen == {"final_state_written": True}  # the row was still there for the runner
    assert outcome.job_ids == [job_id]
    assert counts() == (0, 0, 0)


def test_delete_keeps_the_spec_while_its_build_does_not_stop(api, podman, registry, monkeypatch):
    monkeypatch.setattr(service, "DELETE_WAIT_SECONDS", 0.3)
    spec, job = make_spec()
    assert claim_job(job.id, "worker-1")
    podman.images_by_id["i1"] = [f"{REG}/demo:r0-old"]

    response = api.delete("/api/v1/specs/demo?delete_images=true")

    assert response.status_code == 409
    body = response.get_json()
    assert body["error"].startswith(f"The build r{job.revision} of demo is being cancelled but has not stopped yet")
    assert body["registry_errors"] == []
    db.session.expire_all()
    assert counts()[:2] == (1, 1)
    assert db.session.get(BuildJob, job.id).cancel_requested is True
    assert podman.removed == [] and registry.deleted == []


def test_delete_with_pushed_images_empties_the_repository_first(api, podman, registry):
    spec, first = make_spec()
    succeed(first)
    second = change(spec, "idna")
    succeed(second)
    registry.repositories = {
        "imagebuilder/demo": {first.tag: "sha256:1", second.tag: "sha256:2", "latest": "sha256:2"},
        "imagebuilder/other": {"latest": "sha256:9"},
    }

    response = api.delete("/api/v1/specs/demo?delete_images=true")

    assert response.status_code == 204
    assert registry.repositories == {"imagebuilder/demo": {}, "imagebuilder/other": {"latest": "sha256:9"}}
    assert counts() == (0, 0, 0)


def test_a_registry_refusing_the_delete_keeps_the_spec_and_says_why(client, auth, podman, registry):
    spec, job = make_spec()
    succeed(job)
    registry.repositories = {"imagebuilder/demo": {job.tag: "sha256:1"}}
    registry.refuse = "registry 127.0.0.1:5000 does not allow deleting images (its storage.delete is off)"

    response = client.post("/specs/demo/delete", data={"delete_pushed_images": "1"}, follow_redirects=True)

    body = response.get_data(as_text=True)
    assert "Some pushed images of demo could not be deleted from the registry, so the spec was kept" in body
    assert f"127.0.0.1:5000/imagebuilder/demo:{job.tag}: registry 127.0.0.1:5000 does not allow deleting" in body
    assert counts()[:2] == (1, 1)
    assert podman.removed == []


def test_the_api_says_which_tags_the_registry_refused(api, podman, registry):
    spec, job = make_spec()
    succeed(job)
    registry.repositories = {"imagebuilder/demo": {job.tag: "sha256:1"}}
    registry.refuse = "registry 127.0.0.1:5000 answered HTTP 500 deleting imagebuilder/demo"

    response = api.delete("/api/v1/specs/demo?delete_images=1")

    assert response.status_code == 409
    assert response.get_json()["registry_errors"] == [
        f"127.0.0.1:5000/imagebuilder/demo:{job.tag}: registry 127.0.0.1:5000 answered HTTP 500 deleting imagebuilder/demo"
    ]
    assert api.get("/api/v1/specs/demo").status_code == 200


def test_delete_images_must_be_true_or_false(api, podman, registry):
    make_spec()
    response = api.delete("/api/v1/specs/demo?delete_images=maybe")
    assert response.status_code == 422
    assert response.get_json() == {"errors": [{"field": "delete_images", "line": None, "message": "Must be true or false."}]}
    assert api.get("/api/v1/specs/demo").status_code == 200


def test_a_podman_that_does_not_answer_does_not_stop_the_delete(client, auth, podman, registry):
    make_spec()
    podman.down = True
    podman.images_by_id["i1"] = [f"{REG}/demo:r1-aaaa"]

    body = client.post("/specs/demo/delete", follow_redirects=True).get_data(as_text=True)

    assert "Deleted demo" in body
    assert "could not be removed now (APIError); the scheduled image prune removes them." in body
    assert counts() == (0, 0, 0)


def test_without_a_fake_nothing_is_reached_and_the_delete_still_happens(client, auth):
    make_spec()
    body = client.post("/specs/demo/delete", follow_redirects=True).get_data(as_text=True)
    assert "Deleted demo" in body and counts() == (0, 0, 0)


# -- pruning build images ---------------------------------------------------------------


def test_prune_keeps_the_newest_images_of_each_spec_and_what_others_build_on(app, podman):
    spec, r1 = make_spec("app")
    succeed(r1)
    jobs = [r1] + [change(spec, pip) for pip in ("idna", "certifi", "urllib3")]
    for job in jobs[1:3]:
        succeed(job)
    failed = jobs[3]
    failed.status = JobStatus.FAILED
    db.session.commit()
    # "child" builds on app's r1 image, pushed; "gone" was deleted while Podman was down.
    make_spec("child")
    child = db.session.scalar(select(ImageSpec).where(ImageSpec.name == "child"))
    child.base_image = f"{REG}/app:{r1.tag}"
    db.session.commit()
    names = {job.revision: f"{REG}/app:{job.tag}" for job in jobs}
    podman.images_by_id.update({
        "a1": [names[1]], "a2": [names[2]], "a3": [names[3], f"{REG}/app:latest"], "a4": [names[4]],
        "g1": [f"{REG}/gone:r1-aaaa", f"{REG}/gone:latest"],
        "base": ["localhost/debian:bookworm"], "other": ["127.0.0.1:5000/elsewhere/app:r1-aaaa"],
    })

    summary = maintenance.prune_images(keep_recent=2)

    # Kept: r4 and r3 (newest two), r3 is also the latest succeeded, r1 is child's base.
    assert sorted(summary.removed) == sorted([names[2], f"{REG}/gone:r1-aaaa", f"{REG}/gone:latest"])
    assert set(podman.images_by_id) == {"a1", "a3", "a4", "base", "other"}
    assert podman.prunes == [{"dangling": True, "until": "86400s"}]
    assert summary.dangling_removed == 2 and summary.space_reclaimed_bytes == 2048
    assert summary.disk_before["images"] == 7 and summary.disk_after["images"] == 5


def test_prune_keeps_the_image_of_the_active_revision_however_old(app, podman):
    spec, r1 = make_spec("app")
    succeed(r1)
    jobs = [r1] + [change(spec, pip) for pip in ("idna", "certifi", "urllib3")]
    for job in jobs[1:]:
        succeed(job)
    spec.active_revision = 1  # rolled back to r1
    db.session.commit()
    names = {job.revision: f"{REG}/app:{job.tag}" for job in jobs}
    podman.images_by_id.update({f"a{revision}": [name] for revision, name in names.items()})

    summary = maintenance.prune_images(keep_recent=1)

    # Kept: r4 (the newest, also the latest succeeded) and r1 (the active revision).
    assert sorted(summary.removed) == sorted([names[2], names[3]])
    assert set(podman.images_by_id) == {"a1", "a4"}


def test_prune_keeps_the_image_of_an_active_job_and_one_in_use(app, podman):
    spec, r1 = make_spec("app")
    succeed(r1)
    r2 = change(spec, "idna")  # queued: its image may be on its way to the registry
    podman.images_by_id.update({"a1": [f"{REG}/app:{r1.tag}"], "a2": [f"{REG}/app:{r2.tag}"],
                                "old": [f"{REG}/app:r0-0000"], "used": [f"{REG}/app:r0-1111"]})
    podman.in_use.add(f"{REG}/app:r0-1111")

    summary = maintenance.prune_images(keep_recent=0)

    assert summary.removed == [f"{REG}/app:r0-0000"]
    assert summary.in_use == [f"{REG}/app:r0-1111"]
    assert set(podman.images_by_id) == {"a1", "a2", "used"}


def test_run_maintenance_prunes_once_per_interval_and_never_raises(app, podman, private_redis, monkeypatch, caplog):
    monkeypatch.setattr(maintenance, "_next_run", 0.0)
    podman.images_by_id["old"] = [f"{REG}/gone:r1-aaaa"]

    assert maintenance.run_maintenance(app).removed == [f"{REG}/gone:r1-aaaa"]
    assert maintenance.run_maintenance(app) is None  # not due yet
    monkeypatch.setattr(maintenance, "_next_run", 0.0)
    assert maintenance.run_maintenance(app) is None  # another worker of this host holds the interval
    assert len(podman.prunes) == 1

    private_redis.flushdb()
    monkeypatch.setattr(maintenance, "_next_run", 0.0)
    podman.down = True
    assert maintenance.run_maintenance(app) is None
    assert "event=images_prune_failed" in caplog.text


def test_prune_images_command(app, runner, podman):
    podman.images_by_id.update({"old": [f"{REG}/gone:r1-aaaa"], "base": ["localhost/debian:bookworm"]})
    result = runner.invoke(args=["prune-images", "--keep-recent", "1", "--dangling-keep-hours", "2"])
    assert result.exit_code == 0, result.output
    assert f"removed {REG}/gone:r1-aaaa" in result.output
    assert "removed 2 untagged image(s), 2048 bytes" in result.output
    assert "before: images=2 images_active=0 images_unique_bytes=200" in result.output
    assert podman.prunes == [{"dangling": True, "until": "7200s"}]


# -- the registry client's delete, against a small registry ---------------------------


@pytest.fixture
def small_registry():
    """A plain-HTTP registry holding demo:r1 and demo:latest on one digest; DELETE of a
    manifest by digest answers 202, or 405 while `deletes_enabled` is off."""
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    state = SimpleNamespace(tags={"r1": "sha256:" + "a" * 64, "latest": "sha256:" + "a" * 64},
                            deletes_enabled=True, deleted=[])
    manifest = '{"mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"size": 1}, "layers": []}'

    @Request.application
    def registry(request):
        last = request.path.rsplit("/", 1)[-1]
        if request.method == "DELETE":
            if not state.deletes_enabled:
                return Response('{"errors": [{"code": "UNSUPPORTED"}]}', 405)
            if last not in state.tags.values():
                return Response("{}", 404)
            state.tags = {t: d for t, d in state.tags.items() if d != last}
            state.deleted.append(last)
            return Response("", 202)
        if request.path.startswith("/v2/demo/manifests/") and last in state.tags:
            return Response(manifest, 200, {"Docker-Content-Digest": state.tags[last]})
        return Response("{}", 200 if request.path == "/v2/" else 404)

    server = make_server("127.0.0.1", 0, registry, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}", state
    server.shutdown()


def test_registry_client_deletes_a_tag_by_its_digest(small_registry):
    from app.builds.registry import RegistryClient

    host, state = small_registry
    client = RegistryClient(host, "robot", "secret", tls_verify=False)

    assert client.delete_tag("demo", "r1") is True
    assert state.deleted == ["sha256:" + "a" * 64] and state.tags == {}
    assert client.delete_tag("demo", "latest") is False  # went with r1: same digest


def test_registry_client_says_when_the_registry_does_not_allow_deletes(small_registry):
    from app.builds.registry import RegistryClient

    host, state = small_registry
    state.deletes_enabled = False
    with pytest.raises(RegistryError, match=r"does not allow deleting images \(its storage.delete is off\)"):
        RegistryClient(host, tls_verify=False).delete_tag("demo", "r1")
    assert set(state.tags) == {"r1", "latest"}
