"""An admin reads what is inside a build and compares two revisions, in a real browser.

No worker runs here: the test writes each job's final state and manifest in the database
the way the verify step would.
"""
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.models import BuildJob
from tests.revisions_support import MANIFEST, edit_spec, finish, make_spec, with_version

pytestmark = pytest.mark.browser

MORE = MANIFEST + [("apt", "libjq1", "1.6-2.1", False), ("pip", "setuptools", "66.1.1", False)]


def two_revisions(live_server):
    """demo r1 with six 1.16.0, r2 with six 1.17.0; the id of each job."""
    with live_server.app_context():
        spec, first = make_spec(pip=["six==1.16.0"])
        finish(first, MORE)
        second = finish(edit_spec(spec, pip=["six==1.17.0"]), with_version(MORE, "pip", "six", "1.17.0"))
        return first.id, second.id


def test_filter_the_packages_of_a_job(signed_in, live_server, screenshot):
    page = signed_in
    _first, second = two_revisions(live_server)
    page.goto(f"/jobs/{second}")
    packages = page.locator("#packages")
    rows = packages.locator("#packages-table tbody tr")
    expect(rows).to_have_count(len(MORE))
    expect(packages.locator("[data-filter-shown]")).to_have_text(str(len(MORE)))

    packages.locator("[data-filter-text]").fill("jq")
    expect(rows.locator("visible=true")).to_have_count(2)
    expect(packages.locator("[data-filter-shown]")).to_have_text("2")

    packages.locator("[data-filter-text]").fill("")
    packages.locator("[data-filter-manager]").select_option("pip")
    expect(rows.locator("visible=true")).to_have_count(3)

    packages.locator("[data-filter-requested]").check()
    visible = rows.locator("visible=true")
    expect(visible).to_have_count(1)
    expect(visible).to_contain_text("six")
    expect(visible).to_contain_text("1.17.0")
    expect(visible).to_contain_text("requested")
    screenshot("revisions-01-packages-filter")


def test_compare_two_ticked_revisions_from_the_jobs_tab(signed_in, live_server, screenshot):
    page = signed_in
    two_revisions(live_server)
    page.goto("/specs/demo/edit?tab=jobs")
    button = page.get_by_role("button", name="Compare selected")
    expect(button).to_be_disabled()
    page.get_by_label("Compare r1").check()
    expect(button).to_be_disabled()
    page.get_by_label("Compare r2").check()
    expect(button).to_be_enabled()
    screenshot("revisions-02-jobs-tab-two-ticked")
    button.click()
    page.wait_for_url("**/specs/demo/compare?from=1&to=2")

    expect(page.locator("h1")).to_contain_text("r1")
    expect(page.locator("#spec-changes li.removed")).to_have_text("six==1.16.0")
    expect(page.locator("#spec-changes li.added")).to_have_text("six==1.17.0")
    changes = page.locator("#package-changes tbody tr")
    expect(changes).to_have_count(1)
    expect(changes).to_contain_text("six")
    expect(page.locator("#containerfile-diff .diff-add")).to_contain_text("six==1.17.0")
    screenshot("revisions-03-compare")

    # The form on the page compares another pair.
    page.select_option("#compare-from", "2")
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_url("**/specs/demo/compare?from=2&to=2")
    expect(page.get_by_text("The spec is the same in both revisions.")).to_be_visible()


def test_compare_with_the_previous_revision_from_the_job_page(signed_in, live_server):
    page = signed_in
    _first, second = two_revisions(live_server)
    page.goto(f"/jobs/{second}")
    page.get_by_role("link", name="Compare with r1").click()
    page.wait_for_url("**/specs/demo/compare?from=1&to=2")
    expect(page.locator("#changed-count")).to_have_text("1")
    with live_server.app_context():
        assert db.session.scalar(select(BuildJob.revision).where(BuildJob.id == second)) == 2
