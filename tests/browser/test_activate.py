"""Roll back in a real browser: two real builds of one spec, then Activate on r1's row of
the Jobs tab marks r1 active there, the spec list shows r1's image, and the registry's
`latest` is r1's digest. The worker, Podman and the registry are the real ones.
"""
import pytest
from playwright.sync_api import expect

from integration.support import BASE, change_spec, save_spec

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def live_server_config(build_stack):
    """The live server shares its database, queue and build settings with the worker."""
    return dict(build_stack.settings)


def test_activate_an_older_revision_from_the_jobs_tab(signed_in, live_server, build_stack, screenshot):
    build_stack.app = live_server.app
    build_stack.start_worker()
    first = build_stack.wait_for(save_spec(build_stack, name="roll", base_image=BASE, pip="six"))
    second = build_stack.wait_for(change_spec(build_stack, "roll", pip="idna"))
    assert (first.status, second.status) == ("succeeded", "succeeded"), build_stack.worker_tail()
    build_stack.wait_for_active("roll", 2)

    page = signed_in
    page.goto("/specs/roll/edit?tab=jobs")
    r1, r2 = page.locator(f"#job-row-{first.id}"), page.locator(f"#job-row-{second.id}")
    expect(r2.locator(".active-marker")).to_have_text("active")
    expect(r2).to_have_class("active-revision")
    screenshot("activate-01-jobs-tab-r2-active")

    r1.get_by_role("button", name="Activate").click()

    page.wait_for_url("**/specs/roll/edit?tab=jobs")
    expect(page.locator(".flashes")).to_contain_text("roll r1 is the active revision now.")
    expect(page.locator(f"#job-row-{first.id} .active-marker")).to_have_text("active")
    expect(page.locator(f"#job-row-{second.id}").get_by_role("button", name="Activate")).to_be_visible()
    screenshot("activate-02-jobs-tab-r1-active")
    registry = build_stack.registry_client()
    assert registry.manifest(f"it-{build_stack.sid}/roll", "latest").digest == first.digest

    page.goto("/")
    row = page.locator("#spec-table tbody tr", has_text="roll")
    expect(row.locator(".image")).to_contain_text("r1")
    expect(row.locator(".image")).to_contain_text(first.image)
    screenshot("activate-03-list-shows-r1")
