"""An open spec list notices what happens elsewhere: a spec created and a job started
through the API show up within seconds, through one list-level check (no worker runs:
the jobs stay queued)."""
import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import select

from app.auth.service import issue_token
from app.extensions import db
from app.models import BuildJob, JobStatus, User

pytestmark = pytest.mark.browser


def test_the_open_list_shows_a_job_started_through_the_api(signed_in, live_server, screenshot):
    page = signed_in
    with live_server.app_context():
        token = issue_token(db.session.scalar(select(User)))
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    api.trust_env = False

    created = api.post(f"{live_server.url}/api/v1/specs", json={"name": "from-api", "base_image": "debian"})
    assert created.status_code == 201
    row = page.locator("#spec-table tbody tr", has_text="from-api")
    expect(row.locator(".badge")).to_have_text("queued", timeout=10_000)

    with live_server.app_context():
        job = db.session.scalar(select(BuildJob))
        job.status = JobStatus.SUCCEEDED
        db.session.commit()
    page.reload()
    expect(row.locator(".badge")).to_have_text("succeeded")

    rebuilt = api.post(f"{live_server.url}/api/v1/specs/from-api/rebuild")
    assert rebuilt.status_code == 202 and rebuilt.json()["trigger"]["kind"] == "rebuild"
    expect(row.locator(".badge")).to_have_text("queued", timeout=10_000)
    screenshot("list-notices-api-job")


def test_the_spec_page_shows_its_lineage_and_checks_its_base(signed_in, live_server, screenshot):
    page = signed_in
    registry = live_server.app.config["REGISTRY"]
    for name, base in (("parent", "localhost/debian:bookworm"), ("child", f"{registry}/parent:latest")):
        page.goto("/specs/new")
        page.fill("#name", name)
        page.fill("#base_image", base)
        page.get_by_role("button", name="Save and build").click()
        page.wait_for_url("**/")
    page.goto("/specs/parent/edit")
    expect(page.locator("#base-status")).to_contain_text("Used as base by: child")
    page.get_by_role("button", name="Check base now").click()
    expect(page.locator(".flashes")).to_contain_text("localhost/ base is the build host's own image")
    page.goto("/specs/child/edit")
    expect(page.locator("#base-status")).to_contain_text("Based on: parent")
    expect(page.locator("#base_policy")).to_have_value("rebuild")
    screenshot("spec-page-lineage")
