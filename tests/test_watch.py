"""Keeping images fresh, without a registry: why each job started, base policies, specs
built on other specs (cycles, cascade, delete), and the pure parts of the base watch.
The real registry path is tests/integration/test_base_watch.py."""
import pytest
from sqlalchemy import select

from app.builds.podman import pulled_digest
from app.builds.registry import Platform, ResolvedDigest, platform_manifest
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, Trigger, utcnow
from app.revisions.active import set_active
from app.watch.base_check import NotWatched, build_platform, compare, watch_target
from app.watch.cascade import rebuild_children
from app.watch.lineage import ParentRef, parent_ref

REGISTRY = "127.0.0.1:5000/imagebuilder"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def create(api, name, base="localhost/debian:bookworm", **fields):
    response = api.post("/api/v1/specs", json={"name": name, "base_image": base, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def succeed(job_id, digest, base_digest=None):
    """A job as the runner leaves it after a good build (no worker in unit tests)."""
    job = db.session.get(BuildJob, job_id)
    job.status, job.digest, job.base_digest = JobStatus.SUCCEEDED, digest, base_digest
    job.image = f"{REGISTRY}/{job.spec.name}:{job.tag}"
    db.session.commit()
    return job


# -- pure parts -------------------------------------------------------------------------

@pytest.mark.parametrize("base, expected", [
    ("debian:bookworm", ("registry-1.docker.io", "library/debian", "bookworm")),
    ("debian", ("registry-1.docker.io", "library/debian", "latest")),
    ("mambaorg/micromamba:1.5", ("registry-1.docker.io", "mambaorg/micromamba", "1.5")),
    ("docker.io/library/python:3.12", ("registry-1.docker.io", "library/python", "3.12")),
    ("quay.io/org/img", ("quay.io", "org/img", "latest")),
    ("127.0.0.1:5000/team/base:1", ("127.0.0.1:5000", "team/base", "1")),
])
def test_watch_target_qualifies_references_as_the_builds_do(base, expected):
    ref = watch_target(base)
    assert (ref.host, ref.repository, ref.tag) == expected


@pytest.mark.parametrize("base, digest", [
    (f"debian@{DIGEST_A}", DIGEST_A),
    (f"quay.io/org/img:1@{DIGEST_B}", DIGEST_B),
    ("localhost/debian:bookworm", None),
])
def test_digest_and_localhost_bases_are_not_watched(base, digest):
    target = watch_target(base)
    assert isinstance(target, NotWatched) and target.digest == digest and target.reason


@pytest.mark.parametrize("machine, expected", [
    ("x86_64", Platform("linux", "amd64")),
    ("aarch64", Platform("linux", "arm64", "v8")),
    ("armv7l", Platform("linux", "arm", "v7")),
    ("s390x", Platform("linux", "s390x")),
])
def test_build_platform_uses_the_index_names(machine, expected):
    assert build_platform(machine) == expected


INDEX = {"manifests": [
    {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
    {"digest": "sha256:arm64", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
]}


@pytest.mark.parametrize("platform, expected", [
    (Platform("linux", "amd64"), "sha256:amd"),
    (Platform("linux", "arm64", "v8"), "sha256:arm64"),
    (Platform("linux", "arm", "v6"), None),
    (Platform("windows", "amd64"), None),
])
def test_platform_manifest_picks_the_build_hosts_image(platform, expected):
    assert platform_manifest(INDEX, platform) == expected


@pytest.mark.parametrize("resolved, built_from, expected", [
    (ResolvedDigest(DIGEST_A), DIGEST_A, (DIGEST_A, False)),
    (ResolvedDigest(DIGEST_B), DIGEST_A, (DIGEST_B, True)),
    (ResolvedDigest(DIGEST_A, DIGEST_B), DIGEST_B, (DIGEST_B, False)),  # Podman recorded the platform image
    (ResolvedDigest(DIGEST_A, DIGEST_B), DIGEST_A, (DIGEST_B, False)),  # ... or the index
    (ResolvedDigest(DIGEST_B), None, (DIGEST_B, False)),  # nothing built yet: nothing moved
])
def test_compare(resolved, built_from, expected):
    assert compare(resolved, built_from) == expected


@pytest.mark.parametrize("base, expected", [
    (f"{REGISTRY}/parent:latest", ParentRef("parent", "latest")),
    (f"{REGISTRY}/parent:r3-1a2b3c4d", ParentRef("parent", "r3-1a2b3c4d")),
    (f"{REGISTRY}/parent@{DIGEST_A}", None),
    (f"{REGISTRY}/team/parent:latest", None),
    (f"{REGISTRY}/parent", None),
    ("127.0.0.1:5000/other/parent:latest", None),
    ("debian:bookworm", None),
])
def test_parent_ref(base, expected):
    assert parent_ref(base, REGISTRY) == expected


# -- why each job started ---------------------------------------------------------------

def test_api_jobs_record_their_trigger_and_the_tokens_user(app, api):
    app.config["REGISTRY"] = REGISTRY
    body = create(api, "demo")
    assert body["job"]["trigger"] == {"kind": "created", "user": "admin", "detail": None}
    edited = api.patch("/api/v1/specs/demo", json={"apt": ["curl"]}).get_json()["job"]
    assert edited["trigger"]["kind"] == "edited" and edited["trigger"]["user"] == "admin"
    rebuilt = api.post("/api/v1/specs/demo/rebuild").get_json()
    assert rebuilt["trigger"] == {"kind": "rebuild", "user": "admin", "detail": None}
    assert api.get(f"/api/v1/jobs/{rebuilt['id']}").get_json()["trigger"]["kind"] == "rebuild"


def test_page_jobs_record_the_signed_in_user_and_the_jobs_tab_says_why(client, auth):
    client.post("/specs/new", data={"name": "demo", "base_image": "localhost/debian:bookworm", "apt": "curl"})
    client.post("/specs/demo/rebuild")
    kinds = db.session.execute(select(BuildJob.trigger_kind, BuildJob.trigger_user).order_by(BuildJob.id)).all()
    assert kinds == [("created", "admin"), ("rebuild", "admin")]
    page = client.get("/specs/demo/edit?tab=jobs").get_data(as_text=True)
    assert "<th>Trigger</th>" in page
    assert "rebuild <span class=\"muted\">by admin</span>" in page


# -- base policy ------------------------------------------------------------------------

def test_base_policy_is_set_by_create_and_patch_and_a_policy_change_starts_no_job(api):
    body = create(api, "demo", base_policy="notify")
    assert body["base_policy"] == "notify"
    jobs = db.session.query(BuildJob).count()
    changed = api.patch("/api/v1/specs/demo", json={"base_policy": "off"}).get_json()
    assert changed["base_policy"] == "off" and changed["job"] is None
    assert db.session.query(BuildJob).count() == jobs
    assert create(api, "plain")["base_policy"] == "rebuild"


@pytest.mark.parametrize("value", ["sometimes", 3, None])
def test_a_bad_base_policy_is_a_422_naming_the_field(api, value):
    response = api.post("/api/v1/specs", json={"name": "demo", "base_image": "debian", "base_policy": value})
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["base_policy"]


def test_the_form_sets_the_base_policy_and_offers_other_specs_as_bases(app, client, auth):
    app.config["REGISTRY"] = REGISTRY
    client.post("/specs/new", data={"name": "parent", "base_image": "localhost/debian:bookworm"})
    page = client.get("/specs/new").get_data(as_text=True)
    assert f'<option value="{REGISTRY}/parent:latest">another spec</option>' in page
    client.post("/specs/new", data={"name": "child", "base_image": f"{REGISTRY}/parent:latest",
                                    "base_policy": "notify"})
    assert db.session.scalar(select(ImageSpec.base_policy).where(ImageSpec.name == "child")) == "notify"


# -- specs built on other specs ---------------------------------------------------------

def test_a_cycle_of_specs_is_refused_naming_it(app, api):
    app.config["REGISTRY"] = REGISTRY
    create(api, "a")
    create(api, "b", base=f"{REGISTRY}/a:latest")
    create(api, "c", base=f"{REGISTRY}/b:latest")
    response = api.patch("/api/v1/specs/a", json={"base_image": f"{REGISTRY}/c:latest"})
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["field"] == "base_image" and "a -> c -> b -> a" in error["message"]
    itself = api.post("/api/v1/specs", json={"name": "self", "base_image": f"{REGISTRY}/self:latest"})
    assert "self -> self" in itself.get_json()["errors"][0]["message"]


def test_deleting_a_parent_is_refused_naming_its_children_unless_forced(app, api):
    app.config["REGISTRY"] = REGISTRY
    create(api, "parent")
    create(api, "x", base=f"{REGISTRY}/parent:latest")
    create(api, "y", base=f"{REGISTRY}/parent:r1-1a2b3c4d")
    response = api.delete("/api/v1/specs/parent")
    assert response.status_code == 409
    assert response.get_json()["children"] == ["x", "y"] and "x, y" in response.get_json()["error"]
    assert api.delete("/api/v1/specs/parent?force=true").status_code == 204


def test_the_spec_page_names_parent_and_children_and_the_delete_dialog_warns(app, client, auth, api):
    app.config["REGISTRY"] = REGISTRY
    parent = create(api, "parent")
    child = create(api, "child", base=f"{REGISTRY}/parent:latest")
    good = succeed(parent["job"]["id"], DIGEST_A)
    succeed(child["job"]["id"], DIGEST_B, base_digest=DIGEST_A)
    db.session.get(ImageSpec, good.spec_id).active_revision = good.revision
    child_spec = db.session.scalar(select(ImageSpec).where(ImageSpec.name == "child"))
    child_spec.active_revision = 1
    db.session.commit()
    page = client.get("/specs/child/edit").get_data(as_text=True)
    assert 'Based on: <a href="/specs/parent/edit">parent</a> r1' in page
    parent_page = client.get("/specs/parent/edit").get_data(as_text=True)
    assert 'Used as base by:' in parent_page and '<a href="/specs/child/edit">child</a>' in parent_page
    assert 'name="force"' in parent_page
    refused = client.post("/specs/parent/delete", follow_redirects=True).get_data(as_text=True)
    assert "is the base image of child" in refused
    assert db.session.scalar(select(ImageSpec.id).where(ImageSpec.name == "parent"))


def test_a_new_active_parent_revision_queues_one_job_per_rebuild_child_on_latest(app, api, queued_rq_jobs):
    app.config["REGISTRY"] = REGISTRY
    parent = create(api, "parent")
    create(api, "follows", base=f"{REGISTRY}/parent:latest")
    create(api, "notifies", base=f"{REGISTRY}/parent:latest", base_policy="notify")
    create(api, "pinned", base=f"{REGISTRY}/parent:r1-1a2b3c4d")
    job = succeed(parent["job"]["id"], DIGEST_A)
    set_active(job.spec, job)
    set_active(job.spec, job)  # no change of revision: no second cascade
    started = db.session.execute(
        select(ImageSpec.name, BuildJob.trigger_kind, BuildJob.trigger_user, BuildJob.trigger_detail)
        .join(BuildJob.spec).where(BuildJob.trigger_kind == Trigger.PARENT_CHANGED)
    ).all()
    assert started == [("follows", "parent-changed", None, "parent r1")]


def test_a_child_made_after_latest_moved_gets_no_cascade_job(app, api, queued_rq_jobs):
    # Its first build pulls the new parent already; a second job would supersede it.
    app.config["REGISTRY"] = REGISTRY
    parent = create(api, "parent")
    create(api, "earlier", base=f"{REGISTRY}/parent:latest")
    moved_at = utcnow()
    create(api, "late", base=f"{REGISTRY}/parent:latest")
    job = succeed(parent["job"]["id"], DIGEST_A)
    assert [child_job.spec.name for child_job in rebuild_children(job.spec, job.revision, moved_at)] == ["earlier"]
    assert [child_job.spec.name for child_job in rebuild_children(job.spec, job.revision)] == ["earlier", "late"]


def test_check_base_of_a_local_or_digest_base_asks_nothing_and_says_why(api):
    create(api, "local")
    body = api.post("/api/v1/specs/local/check-base").get_json()
    assert body["moved"] is False and body["job"] is None and "localhost/" in body["note"]
    create(api, "pinned", base=f"debian@{DIGEST_A}")
    body = api.post("/api/v1/specs/pinned/check-base").get_json()
    assert body["current_digest"] == DIGEST_A and body["moved"] is False and "digest" in body["note"]


def test_a_registry_error_is_stored_on_the_spec_and_starts_nothing(app, api, client, auth):
    app.config["REGISTRY"] = REGISTRY
    create(api, "demo", base="127.0.0.1:9/nothing/here:1")  # nothing listens on port 9
    jobs = db.session.query(BuildJob).count()
    body = api.post("/api/v1/specs/demo/check-base").get_json()
    assert body["job"] is None and body["moved"] is False and "could not reach registry 127.0.0.1:9" in body["error"]
    assert db.session.query(BuildJob).count() == jobs
    assert api.get("/api/v1/specs/demo").get_json()["base_check_error"] == body["error"]
    page = client.get("/specs/demo/edit").get_data(as_text=True)
    assert "Last base check failed: could not reach registry 127.0.0.1:9" in page


@pytest.mark.parametrize("info, registry_digest, expected", [
    ({"Digest": DIGEST_A, "RepoDigests": [f"127.0.0.1:5000/team/base@{DIGEST_B}"]}, None, DIGEST_B),
    # Podman lists each digest under each name: the registry's answer picks the pulled one.
    ({"Digest": DIGEST_A, "RepoDigests": [f"127.0.0.1:5000/team/base@{DIGEST_A}",
                                          f"127.0.0.1:5000/team/base@{DIGEST_B}"]}, DIGEST_B, DIGEST_B),
    ({"Digest": DIGEST_A, "RepoDigests": [f"127.0.0.1:5000/team/base@{DIGEST_A}",
                                          f"127.0.0.1:5000/team/base@{DIGEST_B}"]}, None, DIGEST_A),
    ({"Digest": DIGEST_A, "RepoDigests": [f"127.0.0.1:5000/other@{DIGEST_B}"]}, DIGEST_B, DIGEST_A),
    ({"Digest": DIGEST_A}, None, DIGEST_A),
    ({}, None, None),
])
def test_pulled_digest_is_the_registrys_digest_of_the_pulled_repository(info, registry_digest, expected):
    assert pulled_digest(info, "127.0.0.1:5000/team/base:1", registry_digest) == expected


# -- the list notices new jobs ----------------------------------------------------------

def test_the_list_stamp_answers_204_until_a_job_or_spec_is_added(client, auth, api):
    page = client.get("/").get_data(as_text=True)
    stamp_url = page.split('id="spec-list-stamp" hidden hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert client.get(stamp_url).status_code == 204
    create(api, "demo")
    changed = client.get(stamp_url)
    assert changed.status_code == 200 and changed.headers["HX-Refresh"] == "true"
    page = client.get("/").get_data(as_text=True)
    stamp_url = page.split('id="spec-list-stamp" hidden hx-get="', 1)[1].split('"', 1)[0]
    assert client.get(stamp_url).status_code == 204
    api.post("/api/v1/specs/demo/rebuild")
    assert client.get(stamp_url).status_code == 200


def test_the_job_page_says_who_started_it_and_on_which_base(client, auth, api):
    job = create(api, "demo")["job"]
    succeed(job["id"], DIGEST_A, base_digest=DIGEST_B)
    page = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert "<dt>Started by</dt><dd>created <span class=\"muted\">by admin</span>" in page
    assert DIGEST_B in page


# -- bounded -----------------------------------------------------------------------------

def test_the_host_limiter_keeps_requests_in_flight_per_host_bounded():
    import threading
    import time

    from app.watch.base_check import HostLimiter

    limiter, lock, state = HostLimiter(concurrency=2, rate=0), threading.Lock(), {"now": 0, "most": 0, "done": 0}

    def request():
        with limiter.slot("registry.example.com"):
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(0.02)  # the request in flight
            with lock:
                state["now"] -= 1
                state["done"] += 1

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["done"] == 8 and state["most"] <= 2


def test_a_round_asks_once_per_distinct_reference(app, api, monkeypatch):
    from app.builds.registry import RegistryClient
    from app.watch.base_check import check_round

    asked = []

    def resolve(self, repository, tag, platform):  # the registry boundary
        asked.append((self.host, repository, tag))
        return ResolvedDigest(DIGEST_A)

    monkeypatch.setattr(RegistryClient, "resolve", resolve)
    for n in range(12):
        create(api, f"spec{n}", base=f"quay.io/team/base:{n % 3}", base_policy="off" if n == 11 else "rebuild")
    create(api, "local")  # localhost/: not asked
    summary = check_round()
    assert sorted(asked) == [("quay.io", "team/base", str(n)) for n in range(3)]
    assert summary.specs == 11 and summary.references == 3 and summary.jobs == []
    assert db.session.scalar(select(ImageSpec.base_checked_at).where(ImageSpec.name == "spec0")) is not None


@pytest.mark.parametrize("newer_status, starts_a_job", [(JobStatus.SUCCEEDED, False), (JobStatus.FAILED, True)])
def test_a_moved_base_a_newer_revision_already_took_starts_no_rebuild(app, api, monkeypatch, queued_rq_jobs,
                                                                     newer_status, starts_a_job):
    """The runner activates a succeeded build just after writing its final state: a check
    landing in between compares with the older active revision, and must not build again
    what the newer revision already has."""
    from app.builds.registry import RegistryClient

    app.config["REGISTRY"] = REGISTRY
    monkeypatch.setattr(RegistryClient, "resolve", lambda self, repository, tag, platform: ResolvedDigest(DIGEST_B))
    first = succeed(create(api, "fresh", base="quay.io/team/base:1", base_policy="rebuild")["job"]["id"],
                    "sha256:" + "1" * 64, base_digest=DIGEST_A)
    set_active(first.spec, first)
    newer = api.post("/api/v1/specs/fresh/rebuild").get_json()
    succeed(newer["id"], "sha256:" + "2" * 64, base_digest=DIGEST_B)
    db.session.get(BuildJob, newer["id"]).status = newer_status
    db.session.commit()

    body = api.post("/api/v1/specs/fresh/check-base").get_json()
    assert body["moved"] is True and body["built_from"] == DIGEST_A and body["current_digest"] == DIGEST_B
    assert (body["job"] is not None) is starts_a_job
    kinds = db.session.scalars(select(BuildJob.trigger_kind).join(BuildJob.spec).where(ImageSpec.name == "fresh")
                               .order_by(BuildJob.revision)).all()
    assert kinds == ["created", "rebuild"] + (["base-changed"] if starts_a_job else [])
