"""The revisions, registry credential, API token, sign-in and Audit pages in 繁體中文 for an
admin who asks for it (the header's switcher cookie, or a zh-TW browser), and in English,
as before, for everyone else."""
import re
from html import unescape

import pytest
from flask_babel import force_locale

from app.auth.service import issue_token
from app.credentials.service import create_credential
from app.extensions import db
from app.models import JobStatus
from app.revisions.compare import parse_revision
from app.specs.service import create_spec
from tests.conftest import AuthActions
from tests.revisions_support import MANIFEST, edit_spec, finish, make_spec, with_version

pytestmark = pytest.mark.usefixtures("queued_rq_jobs")

ZH_TW = {"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.5"}
CREDENTIAL = {"name": "corp", "registry": "registry.example.com:5000", "username": "robot", "password": "pw-1"}
CJK = re.compile(r"[\u4e00-\u9fff]")
MORE_PACKAGES = MANIFEST + [("apt", "libjq1", "1.6-2.1", False), ("pip", "setuptools", "66.1.1", False)]


def html(response):
    """The page with its character references read (a quote is &#39; in the HTML)."""
    return unescape(response.get_data(as_text=True))


@pytest.fixture
def zh(client, auth):
    """The admin, signed in, who picked 繁體中文 with the header's switcher."""
    client.post("/language", data={"lang": "zh_Hant", "next": "/"})
    return client


def visible_text(body):
    """The words a person reads: no tags, scripts or attribute values."""
    return re.sub(r"<[^>]+>", " ", body)


# --- registry credentials -----------------------------------------------------------------------


def test_the_credential_pages_in_chinese_with_their_flash_and_form_errors(zh):
    body = html(zh.get("/credentials/"))
    assert '<html lang="zh-Hant">' in body
    assert "<h1>Registry 憑證</h1>" in body and "沒有 registry 憑證" in body and "+ 新增 registry 憑證" in body

    refused = zh.post("/credentials/new", data={**CREDENTIAL, "name": "Bad Name", "username": ""})
    assert refused.status_code == 422
    form = html(refused)
    assert "請使用小寫字母與數字" in form and "使用者名稱為必填，且不可包含空白。" in form
    assert "為了安全，密碼不會傳回頁面：請再輸入一次。" in form
    assert '<label for="password">密碼或 access token</label>' in form

    saved = html(zh.post("/credentials/new", data=CREDENTIAL, follow_redirects=True))
    assert "已儲存 registry 憑證 corp。" in saved and "沒有 spec 使用" in saved
    create_spec({"name": "private", "base_image": "registry.example.com:5000/base:1", "pull_secret": "corp"})
    listed = html(zh.get("/credentials/"))
    assert "1 個 spec" in listed and 'data-label="使用者名稱"' in listed

    kept = html(zh.post("/credentials/corp/delete", follow_redirects=True))
    assert "未刪除：registry 憑證 'corp' 正被這些 spec 使用：private。請先修改那些 spec。" in kept
    duplicate = html(zh.post("/credentials/new", data=CREDENTIAL))
    assert "名稱為 'corp' 的 registry 憑證已存在。" in duplicate


def test_the_credential_pages_stay_english_by_default(client, auth):
    refused = html(client.post("/credentials/new", data={**CREDENTIAL, "name": "Bad Name"}))
    assert '<html lang="en">' in refused
    assert "Use lowercase letters, digits and '.', '-', '_' between them." in refused
    saved = html(client.post("/credentials/new", data=CREDENTIAL, follow_redirects=True))
    assert "Saved registry credential corp." in saved and "<h1>Registry credentials</h1>" in saved
    assert not CJK.search(visible_text(saved).replace("繁體中文", ""))


def test_a_zh_tw_browser_gets_the_credential_form_in_chinese_without_the_switcher(client, auth):
    body = html(client.get("/credentials/new", headers=ZH_TW))
    assert '<html lang="zh-Hant">' in body and "<h1>新增 registry 憑證</h1>" in body


# --- API tokens and signing in ------------------------------------------------------------------


def test_the_tokens_page_in_chinese_creates_refuses_and_revokes(zh, admin):
    body = html(zh.get("/tokens"))
    assert "<h1>API token</h1>" in body and "沒有 API token" in body
    assert '<option value="">永不到期</option>' in body and '<option value="30" selected>30 天</option>' in body

    refused = zh.post("/tokens", data={"name": " ", "expires_in_days": "30"})
    assert refused.status_code == 422 and "名稱為必填（說明這個 token 的用途）。" in html(refused)

    made = html(zh.post("/tokens", data={"name": "ci-nightly", "expires_in_days": "7"}))
    assert "您的新 token" in made and "請立即複製" in made and ">撤銷</button>" in made
    prefix = re.search(r'id="token-(ib_[^"]+)"', made).group(1)
    revoked = html(zh.post(f"/tokens/{prefix}/revoke", follow_redirects=True))
    assert f"已撤銷 token {prefix}…（ci-nightly）；它已無法使用。" in revoked


def test_sign_in_errors_and_sign_out_in_chinese(client, admin):
    actions = AuthActions(client)
    client.post("/language", data={"lang": "zh_Hant", "next": "/login"})
    wrong = actions.login(password="wrong-password")
    assert wrong.status_code == 401 and "使用者名稱或密碼錯誤。" in html(wrong)
    for _ in range(4):
        actions.login(password="wrong-password")
    throttled = actions.login()
    assert throttled.status_code == 429
    assert "失敗次數過多。請在 15 分鐘後再試。" in html(throttled)


def test_signed_out_flash_in_chinese(zh):
    assert "已登出。" in html(zh.post("/logout", follow_redirects=True))


def test_the_api_throttle_message_is_chinese_only_when_the_request_asks(client, api_token):
    for _ in range(20):
        client.get("/api/v1/specs", headers={"Authorization": "Bearer ib_wrong"})
    headers = {"Authorization": f"Bearer {api_token}"}
    client.set_cookie("lang", "zh_Hant")  # a browser's cookie does not change what the API says
    english = client.get("/api/v1/specs", headers=headers)
    assert english.status_code == 429 and english.get_json()["error"].startswith("Too many failed attempts.")
    chinese = client.get("/api/v1/specs", headers={**headers, **ZH_TW})
    assert chinese.status_code == 429 and chinese.get_json()["error"].startswith("失敗次數過多。請在 ")


# --- the Audit page -----------------------------------------------------------------------------


def test_the_audit_page_translates_stored_rows_when_shown(zh, admin):
    create_credential(CREDENTIAL)
    issue_token(admin, "ci")
    _spec, job = make_spec()
    zh.post(f"/jobs/{job.id}/cancel")
    body = html(zh.get("/audit"))
    assert '<span class="muted">r1（新增）</span>' in body and '<span class="muted">r1（由管理者取消）</span>' in body
    assert "<dt>基礎 image</dt>" in body and "<dt>APT 套件</dt>" in body
    assert "<h1>稽核記錄</h1>" in body and "<th>執行者</th>" in body and "<th>事件</th>" in body
    assert '<span class="audit-action">新增 registry 憑證</span><code>credential.created</code>' in body
    assert "<dt>密碼</dt>" in body and "（已變更）" in body and "<dt>Registry</dt>" in body
    assert re.search(r"admin 的 ib_\S+… \(ci\)", body)
    assert '<option value="token.created">新增 API token (token.created)</option>' in body
    refused = zh.get("/audit", query_string={"since": "yesterday"})
    assert refused.status_code == 422 and "起始時間：必須是 ISO-8601 日期或日期時間" in html(refused)
    control = zh.get("/audit", query_string={"user": "ad\x01min"})
    assert control.status_code == 422 and "使用者：不可包含控制字元。" in html(control)


def test_the_audit_page_shows_rows_as_stored_in_english(client, auth, admin):
    create_credential(CREDENTIAL)
    issue_token(admin, "ci")
    make_spec()
    body = html(client.get("/audit"))
    assert '<span class="muted">r1 (created)</span>' in body and "<dt>base_image</dt>" in body
    assert '<td data-label="What"><span class="audit-what"><code>credential.created</code>' in body
    assert "<dt>password</dt>" in body and "(changed)" in body
    assert re.search(r"ib_\S+… \(ci\) of admin", body)
    assert '<option value="token.created">token.created</option>' in body
    assert "Since: Must be an ISO-8601" in html(client.get("/audit", query_string={"since": "yesterday"}))


# --- compare, the Packages section, pin and activate --------------------------------------------


def two_revisions():
    spec, first = make_spec(pip=["six==1.16.0"])
    finish(first, MORE_PACKAGES)
    second = finish(edit_spec(spec, pip=["six==1.17.0"]), with_version(MORE_PACKAGES, "pip", "six", "1.17.0"))
    return spec, first, second


def test_the_compare_page_in_chinese(zh):
    two_revisions()
    body = html(zh.get("/specs/demo/compare?from=1&to=2"))
    assert '<html lang="zh-Hant">' in body and "<title>比較 demo" in body
    assert '<label for="compare-from">來源</label>' in body and "r1 · 成功</option>" in body
    assert "<td>Pip 套件</td>" in body and "已安裝套件" in body and "<td>變更</td>" in body
    assert '<span id="changed-count">1</span> 個變更、<span id="added-count">0</span> 個新增' in body
    assert "<td>基礎 image digest</td>" in body and "<td>大小</td>" in body
    assert "兩個版號的 spec 相同。" in html(zh.get("/specs/demo/compare?from=2&to=2"))

    one = zh.get("/specs/demo/compare?rev=1")
    assert one.status_code == 422 and "請勾選剛好兩個工作來比較（已勾選 1 個）。" in html(one)
    missing = zh.get("/specs/demo/compare?from=1&to=9")
    assert missing.status_code == 404 and "demo 沒有版號 9。" in html(missing)
    bad = zh.get("/specs/demo/compare?from=x&to=2")
    assert bad.status_code == 422 and "必須是版號（整數）。" in html(bad)


def test_a_revision_without_a_manifest_is_named_in_chinese(zh):
    spec, first = make_spec()
    finish(first, None, status=JobStatus.FAILED)
    finish(edit_spec(spec, pip=["six==1.17.0"]))
    body = html(zh.get("/specs/demo/compare?from=1&to=2"))
    assert f"工作 {first.id}（demo r1）沒有已安裝套件清單：它在 image 驗證之前就以「失敗」結束。" in body


def test_the_packages_section_and_the_jobs_tab_hint_in_chinese(zh):
    _spec, _first, second = two_revisions()
    body = html(zh.get(f"/jobs/{second.id}"))
    packages = re.search(r'<section id="packages".*?</section>', body, re.S).group(0)
    assert '<h2 id="packages-title">套件</h2>' in packages and ">與 r1 比較</a>" in packages
    assert "鎖定這些版本" in packages and "並以 digest 鎖定基礎 image" in packages
    assert "<th>套件管理器</th>" in packages and ">指定</span>" in packages
    assert f"顯示 <span data-filter-shown>{len(MORE_PACKAGES)}</span> / {len(MORE_PACKAGES)} 個" in packages
    jobs = html(zh.get("/specs/demo/edit?tab=jobs"))
    assert 'data-compare-ready="比較勾選的兩個版號。"' in jobs
    assert 'data-compare-ticked="勾選兩個工作以比較版號（已勾選 {n} 個）。"' in jobs


def test_the_jobs_tab_hint_texts_in_english(client, auth):
    two_revisions()
    jobs = html(client.get("/specs/demo/edit?tab=jobs"))
    assert 'data-compare-ready="Compare the two ticked revisions."' in jobs
    assert 'data-compare-ticked="Tick two jobs to compare their revisions ({n} ticked)."' in jobs


def test_pin_flashes_in_chinese(zh):
    _spec, job = make_spec(pip=["six", "colorama; sys_platform == 'win32'"])
    finish(job)
    pinned = html(zh.post("/specs/demo/pin", data={"revision": "1"}, follow_redirects=True))
    assert "已將 demo 鎖定為 r1 的版本。創建工作 <a href=" in pinned and "</a> 排隊中。" in pinned
    assert "colorama 未安裝（它的 marker 在此 image 中不成立）；維持原樣。" in pinned
    again = html(zh.post("/specs/demo/pin", data={"revision": "1"}, follow_redirects=True))
    assert "demo 已鎖定為 r1 的版本；沒有開始新的創建工作。" in again
    refused = html(zh.post("/specs/demo/pin", data={"revision": "abc"}, follow_redirects=True))
    assert "未鎖定版本：必須是版號（整數）。" in refused


def test_pin_refused_for_a_failed_job_in_chinese(zh):
    _spec, job = make_spec()
    finish(job, None, status=JobStatus.FAILED)
    refused = html(zh.post("/specs/demo/pin", data={"revision": "1"}, follow_redirects=True))
    assert "未鎖定版本：r1 失敗；只有成功的版號才能鎖定版本。" in refused


def test_activation_refused_gives_its_reason_in_chinese(zh):
    _spec, job = make_spec()
    finish(job, None, status=JobStatus.FAILED)
    body = html(zh.post("/specs/demo/activate", data={"revision": "1"}, follow_redirects=True))
    assert "r1 的狀態是「失敗」：只有成功的版號才能設為使用中。" in body


def test_messages_made_outside_a_request_stay_english(app):
    # A worker or the CLI: an app context and no request; the log and stored text stay English.
    with pytest.raises(ValueError, match=r"^Must be a revision number \(an integer\)\.$"):
        parse_revision("x")
    with force_locale("zh_Hant"), pytest.raises(ValueError, match="必須是版號"):
        parse_revision("x")
    db.session.rollback()
