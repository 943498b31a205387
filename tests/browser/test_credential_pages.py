"""Registry credentials in a real browser: add one, use it as a spec's pull secret, see deletion refused."""
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

PASSWORD = "pa55-never-shown-again"


def test_credential_becomes_a_pull_secret_and_stays_secret(signed_in, screenshot):
    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Registry credentials").click()
    expect(page.get_by_text("No registry credentials")).to_be_visible()
    page.get_by_role("link", name="+ Add").first.click()
    page.fill("#name", "corp")
    page.fill("#registry", "registry.example.com:5000")
    page.fill("#username", "robot")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash-success")).to_contain_text("Saved registry credential corp")
    expect(page.locator("#credential-table")).to_contain_text("registry.example.com:5000")
    assert PASSWORD not in page.content()

    # The spec form offers it once "Use image pull secret" is ticked.
    page.goto("/specs/new")
    expect(page.locator("#pull_secret")).to_be_hidden()
    page.check("#use_pull_secret")
    page.fill("#name", "private")
    page.fill("#base_image", "registry.example.com:5000/team/base:1")
    expect(page.locator("#errors-pull_secret")).to_contain_text("Choose a registry credential")
    page.select_option("#pull_secret", "corp")
    expect(page.locator("#errors-pull_secret")).to_have_text("")
    expect(page.locator("#containerfile-preview")).to_contain_text("FROM registry.example.com:5000/team/base:1")
    screenshot("12-add-with-pull-secret")
    page.get_by_role("button", name="Save and build").click()
    expect(page.locator(".flash-success")).to_contain_text("Saved private.")

    page.goto("/credentials/")
    expect(page.locator("#credential-table")).to_contain_text("1 spec")
    screenshot("13-credentials-list")
    page.get_by_role("button", name="Delete").click()
    page.locator("#delete-dialog").get_by_role("button", name="Delete").click()
    expect(page.locator(".flash-error")).to_contain_text("is used by: private")

    page.get_by_role("link", name="Edit").click()
    expect(page.locator("#password")).to_have_value("")
    expect(page.get_by_text("Leave empty to keep the current one")).to_be_visible()
    assert PASSWORD not in page.content()
    screenshot("14-credential-edit")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_text("Signed out.")).to_be_visible()
    page.goto("/credentials/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
