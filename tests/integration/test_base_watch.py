"""Keeping images fresh for real: a base pushed to the local registry, specs built on it by
the real worker, the base moved under the same tag, checks through the API; a parent spec
rebuilt, its child and grandchild following."""
import time

import pytest
from sqlalchemy import select

from app.auth.service import create_or_update_user, issue_token
from app.builds.queue import redis_connection
from app.credentials.service import create_credential
from app.extensions import db
from app.models import BuildJob, ImageSpec, Trigger
from integration.support import ADMIN_PASSWORD, ADMIN_USERNAME, BASE, REGISTRY_HOST, assert_succeeded, drain, save_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(stack):
    """The API as a script uses it; the workers' scheduled round is held off meanwhile
    (its lock taken), so only the checks the tests ask for run."""
    with stack.app.app_context():
        token = issue_token(create_or_update_user(ADMIN_USERNAME, ADMIN_PASSWORD))
        round_lock = f"imagebuilder:{stack.settings['RQ_QUEUE']}:base-check:round"
        redis_connection().set(round_lock, "held by the tests", ex=3600)
    client = stack.app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    class Api:
        def post(self, url, **kw):
            return client.post(url, headers=headers, **kw)

        def get(self, url, **kw):
            return client.get(url, headers=headers, **kw)

        def delete(self, url, **kw):
            return client.delete(url, headers=headers, **kw)

    yield Api()
    with stack.app.app_context():
        redis_connection().delete(round_lock)


def push_base(stack, ref: str, label: str) -> str:
    """A small image made from the test base, pushed as `ref`; the registry's digest."""
    local = stack.build_helper_image(f"watch-{label}", f"FROM {BASE}\nLABEL imagebuilder.test.base={label}\n")
    repo, tag = ref.rsplit(":", 1)
    podman = stack.podman()
    try:
        podman.tag_image(local, repo, tag)
        drain(podman.push(ref, stack.registry_auth(), tls_verify=False))
    finally:
        podman.close()
    return stack.registry_client().manifest(repo.split("/", 1)[1], tag).digest


def job_of(stack, spec: str, kind: str, timeout: float = 120) -> BuildJob:
    """The (finished) job of `spec` that `kind` started, once it has appeared."""
    deadline = time.monotonic() + timeout
    while True:
        with stack.app.app_context():
            job_id = db.session.scalar(
                select(BuildJob.id).join(BuildJob.spec)
                .where(ImageSpec.name == spec, BuildJob.trigger_kind == kind).order_by(BuildJob.id.desc()).limit(1)
            )
        if job_id is not None:
            return stack.wait_for(job_id)
        assert time.monotonic() < deadline, f"no {kind} job of {spec}:\n{stack.worker_tail()}"
        time.sleep(0.5)


def jobs_of(stack, spec: str) -> list[tuple[int, str]]:
    with stack.app.app_context():
        return db.session.execute(
            select(BuildJob.id, BuildJob.trigger_kind).join(BuildJob.spec).where(ImageSpec.name == spec)
            .order_by(BuildJob.id)
        ).all()


def test_a_moved_base_tag_rebuilds_a_rebuild_spec_once_and_marks_a_notify_spec(stack, api):
    base = f"{REGISTRY_HOST}/it-{stack.sid}-watch/base:1"
    first = push_base(stack, base, "one")
    secret = f"watch-{stack.sid}"
    with stack.app.app_context():
        _cred, errors = create_credential({"name": secret, "registry": REGISTRY_HOST, "password":
                                           stack.settings["REGISTRY_PASSWORD"],
                                           "username": stack.settings["REGISTRY_USERNAME"]})
        assert not errors
    # The checks ask the registry with the spec's pull secret, as its builds pull.
    fresh = stack.wait_for(save_spec(stack, name="fresh", base_image=base, pull_secret=secret))
    marked = stack.wait_for(save_spec(stack, name="marked", base_image=base, pull_secret=secret,
                                      base_policy="notify"))
    for job in (fresh, marked):
        assert_succeeded(stack, job)
        assert job.base_digest == first

    unchanged = api.post("/api/v1/specs/fresh/check-base").get_json()
    assert unchanged == {"current_digest": first, "built_from": first, "moved": False, "job": None,
                         "error": None, "note": None}

    second = push_base(stack, base, "two")
    assert second != first
    moved = api.post("/api/v1/specs/fresh/check-base").get_json()
    assert moved["moved"] is True and moved["current_digest"] == second and moved["built_from"] == first
    rebuilt = stack.wait_for(moved["job"])
    assert_succeeded(stack, rebuilt)
    assert (rebuilt.trigger_kind, rebuilt.trigger_user) == (Trigger.BASE_CHANGED, ADMIN_USERNAME)
    assert rebuilt.trigger_detail == f"{first} -> {second}"
    assert rebuilt.base_digest == second

    # The check compares with the active revision's base, and the runner activates a
    # succeeded build just after writing its final state: ask once it is active.
    stack.wait_for_active("fresh", rebuilt.revision)
    again = api.post("/api/v1/specs/fresh/check-base").get_json()
    assert again["moved"] is False and again["job"] is None and again["built_from"] == second
    assert [kind for _id, kind in jobs_of(stack, "fresh")] == [Trigger.CREATED, Trigger.BASE_CHANGED]

    notified = api.post("/api/v1/specs/marked/check-base").get_json()
    assert notified["moved"] is True and notified["job"] is None
    assert [kind for _id, kind in jobs_of(stack, "marked")] == [Trigger.CREATED]
    spec = api.get("/api/v1/specs/marked").get_json()
    assert spec["base_update_digest"] == second and spec["base_check_error"] is None
    client = stack.app.test_client()
    client.post("/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    assert "base image updated" in client.get("/").get_data(as_text=True)


def test_a_parent_rebuild_cascades_to_its_child_and_grandchild(stack, api):
    # Each spec is made once its parent's build is active: an activation landing after the
    # child exists would rebuild the child (parent-changed) and supersede its first job.
    parent = stack.wait_for(save_spec(stack, name="parent", base_image=BASE))
    assert_succeeded(stack, parent)
    stack.wait_for_active("parent", parent.revision)
    child = stack.wait_for(save_spec(stack, name="child", base_image=f"{stack.registry}/parent:latest"))
    assert_succeeded(stack, child)
    assert child.base_digest == parent.digest
    stack.wait_for_active("child", child.revision)
    grandchild = stack.wait_for(save_spec(stack, name="grandchild", base_image=f"{stack.registry}/child:latest"))
    assert_succeeded(stack, grandchild)
    stack.wait_for_active("grandchild", grandchild.revision)

    rebuilt = stack.wait_for(api.post("/api/v1/specs/parent/rebuild").get_json()["id"])
    assert_succeeded(stack, rebuilt)
    child_job = job_of(stack, "child", Trigger.PARENT_CHANGED)
    assert_succeeded(stack, child_job)
    assert child_job.trigger_detail == f"parent r{rebuilt.revision}" and child_job.trigger_user is None
    assert child_job.base_digest == rebuilt.digest
    grandchild_job = job_of(stack, "grandchild", Trigger.PARENT_CHANGED)
    assert_succeeded(stack, grandchild_job)
    assert grandchild_job.trigger_detail == f"child r{child_job.revision}"
    assert grandchild_job.base_digest == child_job.digest
    assert len(jobs_of(stack, "child")) == 2 and len(jobs_of(stack, "grandchild")) == 2

    cycle = stack.app.test_client()
    cycle.post("/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    page = cycle.post("/specs/parent/edit", data={"base_image": f"{stack.registry}/grandchild:latest"})
    assert page.status_code == 422
    assert "parent -&gt; grandchild -&gt; child -&gt; parent" in page.get_data(as_text=True)

    refused = api.delete("/api/v1/specs/parent")
    assert refused.status_code == 409 and refused.get_json()["children"] == ["child"]
