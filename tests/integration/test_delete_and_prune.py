"""Deleting specs and pruning build images, for real: a spec deleted mid-build has its
build stopped in Podman and leaves nothing in the database, Redis or Podman storage; its
pushed images go from the registry only when asked; pruning removes old build images and
keeps the layers the next build reuses."""
import time

import pytest
from sqlalchemy import select

from app.auth.service import create_or_update_user, issue_token
from app.builds.maintenance import prune_images
from app.builds.queue import redis_connection, rq_job_id
from app.extensions import db
from app.models import BuildJob, ImageSpec, LogChunk
from integration.support import ADMIN_PASSWORD, ADMIN_USERNAME, BASE, assert_succeeded, change_spec, save_spec
from integration.test_stopping import SLEEPY_PIP, assert_nothing_left, wait_until_sleeping

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sleepy(stack):
    """A base image whose pip says it sleeps, then sleeps for minutes."""
    return stack.build_helper_image(
        "delete-sleepy", f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n",
        {"pip": SLEEPY_PIP.encode()},
    )


@pytest.fixture
def admin_client(stack):
    client = stack.app.test_client()
    assert client.post("/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}).status_code == 302
    return client


def local_names(stack, spec_name):
    podman = stack.podman()
    try:
        prefix = f"{stack.registry}/{spec_name}:"
        return sorted(n for image in podman.client.images.list() for n in image.attrs.get("Names") or []
                      if n.startswith(prefix))
    finally:
        podman.close()


def redis_traces(stack, job_ids):
    """Every Redis key naming one of the jobs, or a list/set/zset holding one."""
    with stack.app.app_context():
        redis = redis_connection()
        ids = [rq_job_id(job_id).encode() for job_id in job_ids]
    found = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key).decode()
        members = (redis.lrange(key, 0, -1) if kind == "list" else redis.zrange(key, 0, -1) if kind == "zset"
                   else redis.smembers(key) if kind == "set" else [])
        if any(job_id in key for job_id in ids) or any(member in ids for member in members):
            found.append(key.decode())
    return found


def rows_of(stack, job_ids):
    with stack.app.app_context():
        return (db.session.scalars(select(BuildJob.id).where(BuildJob.id.in_(job_ids))).all()
                + db.session.scalars(select(LogChunk.job_id).where(LogChunk.job_id.in_(job_ids))).all())


def spec_exists(stack, name):
    with stack.app.app_context():
        return db.session.scalar(select(ImageSpec.id).where(ImageSpec.name == name)) is not None


def test_deleting_a_spec_mid_build_stops_the_build_and_leaves_nothing(stack, sleepy, admin_client):
    job_id = save_spec(stack, name="doomed", base_image=sleepy, pip="six")
    wait_until_sleeping(stack, job_id, timeout=120)
    podman = stack.podman()
    try:
        assert podman.build_containers()  # the RUN step is running
    finally:
        podman.close()

    asked = time.monotonic()
    response = admin_client.post("/specs/doomed/delete", follow_redirects=True)
    took = time.monotonic() - asked

    body = response.get_data(as_text=True)
    assert "Deleted doomed with its build jobs and logs." in body, body[-2000:]
    assert took < 20, f"the delete took {took:.0f}s"
    assert not spec_exists(stack, "doomed")
    assert rows_of(stack, [job_id]) == []
    assert redis_traces(stack, [job_id]) == []
    assert local_names(stack, "doomed") == []
    # The runner ended the job itself before its row went: it stopped the build in Podman.
    worker_log = stack.worker_log.read_text()
    assert f"job={job_id} event=cancelled" in worker_log, stack.worker_tail()
    assert_nothing_left(stack)
    assert stack.registry_client().tags(f"it-{stack.sid}/doomed") == []


def build_and_push(stack, name):
    job = stack.wait_for(save_spec(stack, name=name, base_image=BASE, pip="six"))
    assert_succeeded(stack, job)
    repository = f"it-{stack.sid}/{name}"
    stack.wait_for_active(name, job.revision)
    assert set(stack.registry_client().tags(repository)) == {job.tag, "latest"}
    assert local_names(stack, name) == [job.image]  # latest is re-tagged in the registry only
    return job, repository


def test_deleting_with_also_delete_pushed_images_empties_the_repository(stack, admin_client):
    job, repository = build_and_push(stack, "gone")

    response = admin_client.post("/specs/gone/delete", data={"delete_pushed_images": "1"}, follow_redirects=True)

    body = response.get_data(as_text=True)
    assert "Its pushed images were deleted from the registry (2 tag(s))." in body, body[-2000:]
    assert stack.registry_client().tags(repository) == []
    assert stack.registry_client().manifest(repository, job.tag) is None
    assert not spec_exists(stack, "gone") and rows_of(stack, [job.id]) == []
    assert redis_traces(stack, [job.id]) == []
    assert local_names(stack, "gone") == []


def test_deleting_without_the_box_keeps_the_pushed_images(stack):
    job, repository = build_and_push(stack, "kept")
    client = stack.app.test_client()
    with stack.app.app_context():
        token = issue_token(create_or_update_user(ADMIN_USERNAME, ADMIN_PASSWORD))

    response = client.delete("/api/v1/specs/kept", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 204
    assert not spec_exists(stack, "kept") and rows_of(stack, [job.id]) == []
    assert local_names(stack, "kept") == []
    assert set(stack.registry_client().tags(repository)) == {job.tag, "latest"}
    assert stack.registry_client().manifest(repository, job.tag).digest == job.digest


def test_prune_keeps_the_latest_image_and_its_layers_for_the_next_build(stack):
    # A base of this session's own, so the APT layer below exists only from this test's builds.
    base = stack.build_helper_image("prune-base", f"FROM {BASE}\n")
    first = stack.wait_for(save_spec(stack, name="pruned", base_image=base, apt="jq", pip="six"))
    assert_succeeded(stack, first)
    second = stack.wait_for(change_spec(stack, "pruned", pip="idna"))
    assert_succeeded(stack, second)
    podman = stack.podman()
    try:
        first_id = podman.inspect_image(first.image)["Id"]
    finally:
        podman.close()

    with stack.app.app_context():
        summary = prune_images(keep_recent=1)

    assert first.image in summary.removed
    assert local_names(stack, "pruned") == [second.image]
    podman = stack.podman()
    try:
        assert podman.inspect_image(first_id) is None  # the image itself is gone, not only its name
    finally:
        podman.close()
    assert summary.disk_after["images_unique_bytes"] <= summary.disk_before["images_unique_bytes"]
    # Pushed images are the registry's: pruning the build host leaves them.
    assert first.tag in stack.registry_client().tags(f"it-{stack.sid}/pruned")

    third = stack.wait_for(change_spec(stack, "pruned", pip="certifi"))
    assert_succeeded(stack, third)
    log = stack.log_text(third.id)
    apt_step, pip_step = log.index("apt-get install"), log.index("pip install")
    assert "Using cache" in log[apt_step:pip_step], log[apt_step:pip_step]
