"""API tokens and the audit trail in a real browser: make a token (shown once, copied),
revoke it, then see who changed a spec on its History tab and on the Audit page."""
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_a_token_is_shown_once_and_the_trail_answers_who_changed_the_spec(signed_in, live_server, screenshot):
    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API tokens").click()
    expect(page.get_by_text("No API tokens")).to_be_visible()
    page.fill("#token-name", "ci-nightly")
    page.select_option("#token-expiry", "90")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token-value").inner_text()
    assert token.startswith("ib_")
    page.locator("#new-token").get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == token
    expect(page.locator("#token-table")).to_contain_text("ci-nightly")
    screenshot("20-api-tokens")
    page.goto("/tokens")
    assert token not in page.content()
    page.locator(f"#token-{token[:10]}").get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash-success")).to_contain_text("Revoked token")

    page.goto("/specs/new")
    page.fill("#name", "audited")
    page.fill("#base_image", "debian:bookworm")
    page.fill("#apt", "curl")
    page.get_by_role("button", name="Save and build").click()
    page.goto("/specs/audited/edit")
    page.fill("#apt", "curl\nwget")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("link", name="History").click()
    table = page.locator("#audit-table")
    expect(table).to_contain_text("spec.edited")
    expect(table).to_contain_text("spec.created")
    expect(table.locator("tbody tr").first).to_contain_text("wget")
    screenshot("21-spec-history")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    page.select_option("select[name=action]", "token.revoked")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    expect(page.locator("#audit-table")).to_contain_text("ci-nightly")
    page.select_option("select[name=action]", "")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-table")).to_contain_text("signin.succeeded")
    screenshot("22-audit")
    assert token not in page.content()
