"""Active revision and rollback against the real registry: two real builds, then
activating the older one moves the registry's `latest` back to its digest (asked of the
registry itself), and the spec list shows it; with REGISTRY_PUSH_LATEST off nothing moves.
"""
import pytest

from app.auth.service import create_or_update_user, issue_token
from integration.support import ADMIN_USERNAME, ADMIN_PASSWORD, BASE, assert_succeeded, change_spec, save_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_revisions(stack):
    """Spec `rollback` with two succeeded revisions, r2 active."""
    first = stack.wait_for(save_spec(stack, name="rollback", base_image=BASE, pip="six"))
    assert_succeeded(stack, first)
    second = stack.wait_for(change_spec(stack, "rollback", pip="idna"))
    assert_succeeded(stack, second)
    stack.wait_for_active("rollback", second.revision)
    return first, second


@pytest.fixture
def api(stack):
    client = stack.app.test_client()
    with stack.app.app_context():
        token = issue_token(create_or_update_user(ADMIN_USERNAME, ADMIN_PASSWORD))
    return client, {"Authorization": f"Bearer {token}"}


def latest_digest(stack):
    return stack.registry_client().manifest(f"it-{stack.sid}/rollback", "latest").digest


def test_a_succeeded_build_moved_latest_to_its_digest(stack, two_revisions):
    first, second = two_revisions
    assert first.digest != second.digest
    assert latest_digest(stack) == second.digest
    log = stack.log_text(second.id)
    assert f"==> r2 is the active revision; {stack.registry}/rollback:latest is {second.digest}." in log


def test_activating_r1_after_r2_moves_latest_back_and_the_list_shows_r1(stack, two_revisions, api):
    first, second = two_revisions
    client, headers = api

    response = client.post("/api/v1/specs/rollback/activate", json={"revision": 1}, headers=headers)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["active_revision"] == 1 and response.get_json()["image"] == first.image
    assert latest_digest(stack) == first.digest
    assert client.post("/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}).status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert 'title="The active revision">r1</a>' in page and f'data-copy="{first.image}"' in page

    back = client.post("/api/v1/specs/rollback/activate", json={"revision": 2}, headers=headers)
    assert back.status_code == 200 and latest_digest(stack) == second.digest


def test_with_push_latest_off_activating_moves_nothing_in_the_registry(stack, two_revisions, api):
    first, second = two_revisions
    client, headers = api
    client.post("/api/v1/specs/rollback/activate", json={"revision": 2}, headers=headers)
    stack.app.config["REGISTRY_PUSH_LATEST"] = False
    try:
        response = client.post("/api/v1/specs/rollback/activate", json={"revision": 1}, headers=headers)
    finally:
        stack.app.config["REGISTRY_PUSH_LATEST"] = True

    assert response.status_code == 200 and response.get_json()["active_revision"] == 1
    assert latest_digest(stack) == second.digest


def test_a_revision_the_registry_no_longer_has_is_refused(stack, two_revisions, api):
    first, _second = two_revisions
    client, headers = api
    client.post("/api/v1/specs/rollback/activate", json={"revision": 2}, headers=headers)
    stack.registry_client().delete_tag(f"it-{stack.sid}/rollback", first.tag)

    response = client.post("/api/v1/specs/rollback/activate", json={"revision": 1}, headers=headers)

    assert response.status_code == 409
    assert f"no longer has it-{stack.sid}/rollback:{first.tag}" in response.get_json()["error"]
    assert response.get_json()["error"].startswith("Registry 127.0.0.1:5000")


def test_a_worker_with_push_latest_off_builds_and_activates_without_a_latest_tag(stack):
    stack.stop_worker(stack.worker)
    stack.start_worker(REGISTRY_PUSH_LATEST="false")
    try:
        job = stack.wait_for(save_spec(stack, name="no-latest", base_image=BASE, pip="six"))
        assert_succeeded(stack, job)
        stack.wait_for_active("no-latest", job.revision)
    finally:
        stack.stop_worker(stack.worker)
        stack.start_worker()

    assert stack.registry_client().tags(f"it-{stack.sid}/no-latest") == [job.tag]
    log = stack.log_text(job.id)
    assert f"the registry's it-{stack.sid}/no-latest:latest is left alone (REGISTRY_PUSH_LATEST is off)" in log
