"""The spec form's test command in a real browser: checked while typing, shown in the preview."""
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_test_command_is_checked_while_typing_and_previewed(signed_in, screenshot):
    page = signed_in
    page.get_by_role("link", name="+ Add").first.click()
    page.fill("#name", "tested")
    page.fill("#base_image", "debian:bookworm")
    page.fill("#apt", "jq")
    page.fill("#test_command", "jq --version\tid")
    errors = page.locator("#errors-test_command")
    expect(errors).to_contain_text("Only printable characters are allowed")

    page.fill("#test_command", "jq --version && test \"$(id -un)\" = root")
    expect(errors).to_have_text("")
    preview = page.locator("#containerfile-preview")
    expect(preview).to_contain_text("# Test command, run in the built image before the push")
    expect(preview).to_contain_text('# jq --version && test "$(id -un)" = root')
    screenshot("20-test-command-preview")
