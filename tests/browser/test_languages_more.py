"""An admin switches to 繁體中文 with the header's control and uses the registry credential,
API token, Audit and compare pages in it (an error, a flash, the Jobs tab's compare hint),
then switches back to English. Screenshots of each, a narrow screen included, are saved
under test-artifacts/screenshots/."""
import pytest
from playwright.sync_api import expect

from tests.revisions_support import MANIFEST, edit_spec, finish, make_spec, with_version

pytestmark = pytest.mark.browser

NARROW = {"width": 390, "height": 844}


def switch_to(page, lang):
    page.locator(f"form.language button[name=lang][value={lang}]").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hant" if lang == "zh_Hant" else "en")


def two_revisions(live_server):
    with live_server.app_context():
        spec, first = make_spec(pip=["six==1.16.0"])
        finish(first)
        finish(edit_spec(spec, pip=["six==1.17.0"]), with_version(MANIFEST, "pip", "six", "1.17.0"))


def test_credentials_tokens_audit_and_compare_in_traditional_chinese(signed_in, live_server, screenshot):
    page = signed_in
    two_revisions(live_server)
    page.goto("/credentials/")
    switch_to(page, "zh_Hant")
    expect(page).to_have_url(f"{live_server.url}/credentials/")
    expect(page.locator("h1")).to_have_text("Registry 憑證")
    expect(page.get_by_text("沒有 registry 憑證")).to_be_visible()

    # Add, with an error first.
    page.get_by_role("link", name="+ 新增", exact=True).click()
    expect(page.locator("h1")).to_have_text("新增 registry 憑證")
    page.fill("#name", "Corp Registry")
    page.fill("#registry", "registry.example.com:5000")
    page.fill("#username", "robot")
    page.fill("#password", "pw-never-shown")
    page.get_by_role("button", name="確認").click()
    expect(page.locator("#errors-name")).to_contain_text("請使用小寫字母與數字")
    expect(page.get_by_text("為了安全，密碼不會傳回頁面：請再輸入一次。")).to_be_visible()
    screenshot("zh-more-01-credential-error")
    page.fill("#name", "corp")
    page.fill("#password", "pw-never-shown")
    page.get_by_role("button", name="確認").click()
    expect(page.locator(".flash-success")).to_contain_text("已儲存 registry 憑證 corp。")
    expect(page.locator("#credential-table")).to_contain_text("沒有 spec 使用")
    screenshot("zh-more-02-credentials")

    # API tokens: make one, refuse a nameless one, revoke.
    page.goto("/tokens")
    expect(page.locator("h1")).to_have_text("API token")
    page.get_by_role("button", name="新增 token").click()
    expect(page.locator("#token-form .field-errors")).to_contain_text("名稱為必填")
    page.fill("#token-name", "ci-nightly")
    page.select_option("#token-expiry", "90")
    page.get_by_role("button", name="新增 token").click()
    expect(page.locator("#new-token h2")).to_have_text("您的新 token")
    expect(page.locator("#token-table thead")).to_contain_text("最後使用")
    screenshot("zh-more-03-tokens")
    page.locator("#token-table").get_by_role("button", name="撤銷").click()
    expect(page.locator(".flash-success")).to_contain_text("已撤銷 token")

    # The Audit page: stored rows, shown in Chinese, filtered by a translated action.
    page.goto("/audit")
    expect(page.locator("h1")).to_have_text("稽核記錄")
    page.select_option("select[name=action]", "credential.created")
    page.get_by_role("button", name="篩選").click()
    rows = page.locator("#audit-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("新增 registry 憑證")
    expect(rows).to_contain_text("（已變更）")
    screenshot("zh-more-04-audit")
    page.set_viewport_size(NARROW)
    page.goto("/audit")
    screenshot("zh-more-05-audit-narrow")
    page.set_viewport_size({"width": 1280, "height": 860})

    # The Jobs tab's hint comes from the page in Chinese; the comparison too.
    page.goto("/specs/demo/edit?tab=jobs")
    hint = page.locator("[data-compare-hint]")
    page.get_by_label("比較 r1").check()
    expect(hint).to_have_text("勾選兩個工作以比較版號（已勾選 1 個）。")
    page.get_by_label("比較 r2").check()
    expect(hint).to_have_text("比較勾選的兩個版號。")
    page.locator("#compare-form button[type=submit]").click()
    page.wait_for_url("**/specs/demo/compare?from=1&to=2")
    expect(page.locator("#package-changes-title")).to_have_text("已安裝套件")
    expect(page.locator("#spec-changes")).to_contain_text("Pip 套件")
    expect(page.locator("#package-changes tbody tr")).to_contain_text("變更")
    screenshot("zh-more-06-compare")
    page.set_viewport_size(NARROW)
    page.reload()
    screenshot("zh-more-07-compare-narrow")
    page.set_viewport_size({"width": 1280, "height": 860})

    # The job page's Packages section.
    page.get_by_role("link", name="r2", exact=True).click()
    expect(page.locator("#packages-title")).to_have_text("套件")
    expect(page.locator("#packages").get_by_role("button", name="鎖定這些版本")).to_be_visible()
    screenshot("zh-more-08-packages")

    # And back to English, which the cookie keeps.
    switch_to(page, "en")
    expect(page.locator("#packages-title")).to_have_text("Packages")
    page.goto("/specs/demo/compare?from=1&to=2")
    expect(page.locator("#package-changes-title")).to_have_text("Installed packages")
    page.goto("/audit")
    expect(page.locator("h1")).to_have_text("Audit")
    expect(page.locator("#audit-table")).to_contain_text("credential.created")
    screenshot("zh-more-09-audit-english")
