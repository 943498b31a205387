"""The messages made in Python (validation, flashes, refusals, error texts, the API's
errors) in Traditional Chinese for a zh-TW request, with their line numbers, offending
text and limits; English for everyone else, and outside a request."""
import html as html_module
import re

import pytest
from flask_babel import refresh
from werkzeug.exceptions import default_exceptions

from app.extensions import db
from app.models import JobStatus
from app.specs.service import create_spec
from app.specs.validation import validate_spec
from app.ui import WERKZEUG_DESCRIPTIONS

pytestmark = pytest.mark.usefixtures("queued_rq_jobs")  # empties this test's RQ queue afterwards

ZH = {"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.8"}
SPEC_FORM = {"name": "demo", "base_image": "debian:bookworm", "apt": "", "pip": "", "conda": "", "auto_activate": "1"}
HUGE = "9" * 30
_ERROR_ITEM = re.compile(
    r'<li>(?:<span class="line-no">(?P<line>[^<]*)</span> (?:<code>(?P<text>[^<]*)</code> — )?)?(?P<message>.*?)</li>'
)


def field_errors(body: str, field: str) -> list[tuple[int | None, str | None, str]]:
    """(line number, offending text, message) of each error shown under a field."""
    match = re.search(rf'<div class="field-errors" id="errors-{field}"[^>]*>(.*?)</div>', body, re.S)
    assert match, f"no error list for {field}"
    items = []
    for item in _ERROR_ITEM.finditer(match.group(1)):
        number = re.search(r"\d+", item["line"]) if item["line"] else None
        text = html_module.unescape(item["text"]) if item["text"] is not None else None
        items.append((int(number.group()) if number else None, text, html_module.unescape(item["message"])))
    return items


def body_of(response) -> str:
    return response.get_data(as_text=True)


def flashes(body: str) -> str:
    return html_module.unescape(re.sub(r"<[^>]+>", "", body))


# --- the form ----------------------------------------------------------------------------------


BAD_FORM = {
    **SPEC_FORM,
    "name": "Demo",
    "apt": "curl\n\nBad_Name\n",
    "pip": "requests\nnumpy\nRequests>=2\n",
    "conda": "numpy\n# a comment\nnumpy=>>1\n",
}


def test_a_zh_tw_form_shows_each_error_in_chinese_next_to_its_line_and_text(client, auth):
    response = client.post("/specs/new", data=BAD_FORM, headers=ZH)
    assert response.status_code == 422
    body = body_of(response)
    assert field_errors(body, "name") == [
        (None, None, "只允許小寫字母、數字、'.'、'-' 與 '_'（發現 'D'）。您是指 'demo' 嗎？")
    ]
    assert field_errors(body, "apt") == [
        (3, "Bad_Name", "'Bad_Name' 不是 Debian 套件名稱（小寫字母、數字、'+'、'-'、'.'；至少兩個字元，以字母或數字開頭）。")
    ]
    assert field_errors(body, "pip") == [(3, "Requests>=2", "'requests' 已列在第 1 行。")]
    ((line, text, message),) = field_errors(body, "conda")
    assert (line, text) == (3, "numpy=>>1")
    assert message.startswith("不是有效的 conda MatchSpec：") and len(message) > len("不是有效的 conda MatchSpec：")


def test_the_same_form_in_english_keeps_the_english_messages_and_lines(client, auth):
    body = body_of(client.post("/specs/new", data=BAD_FORM, headers={"Accept-Language": "en-US"}))
    assert field_errors(body, "apt")[0][:2] == (3, "Bad_Name")
    assert field_errors(body, "apt")[0][2].startswith("'Bad_Name' is not a Debian package name (lowercase letters")
    assert field_errors(body, "pip") == [(3, "Requests>=2", "'requests' is already listed on line 1.")]
    assert field_errors(body, "name")[0][2].endswith("Did you mean 'demo'?")
    assert field_errors(body, "conda")[0][2].startswith("Not a valid conda MatchSpec: ")


def test_the_cookie_switches_the_form_messages_too(client, auth):
    client.set_cookie("lang", "zh_Hant")
    body = body_of(client.post("/specs/new", data={**SPEC_FORM, "base_image": ""},
                               headers={"Accept-Language": "en-US"}))
    assert field_errors(body, "base_image") == [(None, None, "基礎 image 為必填。")]


def test_too_many_lines_names_the_limit_in_chinese(client, auth, app):
    app.config["MAX_PACKAGE_LINES"] = 2
    body = body_of(client.post("/specs/new", data={**SPEC_FORM, "apt": "curl\ngit\nmake"}, headers=ZH))
    assert field_errors(body, "apt") == [
        (None, None, "每個套件欄位最多 2 行（此欄位有 3 行；上限由 MAX_PACKAGE_LINES 設定）。")
    ]


def test_live_validation_answers_in_chinese(client, auth):
    body = body_of(client.post("/specs/validate", data={**SPEC_FORM, "apt": "curl\n-y", "test_command": "a\tb"},
                               headers=ZH))
    assert field_errors(body, "apt") == [(2, "-y", "不允許選項，只能填寫套件名稱。")]
    assert field_errors(body, "test_command") == [
        (None, None, "只允許可列印字元；發現 '\\t'（tab 與控制字元都不允許）。")
    ]


def test_an_unchosen_pull_secret_and_a_cycle_are_refused_in_chinese(client, auth, app):
    registry = app.config["REGISTRY"]
    create_spec({**SPEC_FORM, "name": "parent"})
    create_spec({**SPEC_FORM, "name": "child", "base_image": f"{registry}/parent:latest"})
    body = body_of(client.post("/specs/parent/edit", data={**SPEC_FORM, "base_image": f"{registry}/child:latest",
                                                            "use_pull_secret": "1"}, headers=ZH))
    assert field_errors(body, "pull_secret") == [(None, None, "請選擇 registry 憑證，或取消勾選「使用 Image PullSecret」。")]
    assert field_errors(body, "base_image") == [
        (None, None, "這個基礎 image 會讓 spec 互相以對方為基礎而形成循環：parent -> child -> parent。")
    ]


# --- flash messages ---------------------------------------------------------------------------


def test_saving_rebuilding_cancelling_and_deleting_flash_in_chinese(client, auth):
    response = client.post("/specs/new", data={**SPEC_FORM, "apt": "curl"}, headers=ZH, follow_redirects=True)
    body = body_of(response)
    assert re.search(r'已儲存 demo。 創建工作 <a href="/jobs/(\d+)">r1</a> 已排入佇列（tag <code>[^<]+</code>）。', body)

    body = body_of(client.post("/specs/demo/rebuild", headers=ZH, follow_redirects=True))
    assert re.search(r'正在重新創建 demo。 創建工作 <a href="/jobs/\d+">r2</a> 已排入佇列', body)

    job_id = re.search(r'創建工作 <a href="/jobs/(\d+)">r2</a>', body).group(1)
    assert "正在取消創建 demo r2。" in flashes(body_of(client.post(f"/jobs/{job_id}/cancel", headers=ZH,
                                                                 follow_redirects=True)))
    assert "demo r2 已經結束。" in flashes(body_of(client.post(f"/jobs/{job_id}/cancel", headers=ZH,
                                                            follow_redirects=True)))

    body = flashes(body_of(client.post("/specs/demo/edit", data={**SPEC_FORM, "apt": "curl"}, headers=ZH,
                                       follow_redirects=True)))
    assert "沒有變更；未開始新的創建。" in body

    body = flashes(body_of(client.post("/specs/demo/delete", headers=ZH, follow_redirects=True)))
    assert "已刪除 demo 及其創建工作與記錄。已推送的 image 仍保留在 registry 中。" in body


def test_the_flash_link_escapes_what_it_names(client, auth):
    body = body_of(client.post("/specs/new", data={**SPEC_FORM, "apt": "curl"}, follow_redirects=True))
    assert re.search(r'Saved demo\. Build job <a href="/jobs/\d+">r1</a> is queued \(tag <code>[^<]+</code>\)\.',
                     body)


def test_a_delete_refused_for_children_and_an_activation_refused_are_in_chinese(client, auth, app):
    registry = app.config["REGISTRY"]
    create_spec({**SPEC_FORM, "name": "parent"})
    create_spec({**SPEC_FORM, "name": "kid", "base_image": f"{registry}/parent:latest"})
    body = flashes(body_of(client.post("/specs/parent/delete", headers=ZH, follow_redirects=True)))
    assert ("parent 是 kid 的基礎 image：刪除後它們下次創建會失敗。請先變更它們的基礎 image，或仍然刪除。" in body)

    body = flashes(body_of(client.post("/specs/parent/activate", data={"revision": "1"}, headers=ZH,
                                       follow_redirects=True)))
    assert "parent r1 未設為使用中：" in body


def test_a_base_that_is_not_watched_says_so_in_chinese(client, auth):
    create_spec({**SPEC_FORM, "name": "local", "base_image": "localhost/base:1"})
    body = flashes(body_of(client.post("/specs/local/check-base", headers=ZH, follow_redirects=True)))
    assert "localhost/ 開頭的基礎 image 是創建主機本機的 image，不在任何 registry 上：不會檢查。" in body


# --- error pages: 413, 422, 404 ---------------------------------------------------------------


def test_the_413_and_422_pages_are_in_chinese(client, auth, app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.post("/specs/new", data={**SPEC_FORM, "apt": "curl\n" * 400}, headers=ZH)
    assert response.status_code == 413
    assert "請求內容太大：最多接受 1000 B（1000 bytes，MAX_CONTENT_LENGTH）。" in body_of(response)

    response = client.get("/?page=abc", headers=ZH)
    assert response.status_code == 422
    assert "查詢參數 'page'：必須是整數。" in html_module.unescape(body_of(response))
    response = client.get("/?page=0", headers={**ZH, "HX-Request": "true"})
    assert html_module.unescape(body_of(response)) == "查詢參數 'page'：不可小於 1。"


def test_a_404_for_htmx_is_in_chinese_and_english_otherwise(client, auth):
    response = client.get("/specs/nope/row", headers={**ZH, "HX-Request": "true"})
    assert response.status_code == 404
    assert body_of(response) == "伺服器上找不到請求的 URL。如果您是手動輸入 URL，請檢查拼字後再試一次。"
    english = client.get("/specs/nope/row", headers={"HX-Request": "true"})
    assert body_of(english) == default_exceptions[404].description


# --- the API ------------------------------------------------------------------------------------


BAD_SPEC = {"name": "demo", "base_image": "debian:bookworm", "apt": ["curl", "-y", "curl"], "pip": ["a", "A"]}


def test_api_messages_are_chinese_only_with_accept_language_and_fields_and_lines_stay(api, client):
    english = api.post("/api/v1/specs", json=BAD_SPEC)
    client.set_cookie("lang", "zh_Hant")  # a browser's choice: the API does not follow it
    with_cookie = api.post("/api/v1/specs", json=BAD_SPEC)
    chinese = api.post("/api/v1/specs", json=BAD_SPEC, headers=ZH)
    assert english.status_code == with_cookie.status_code == chinese.status_code == 422
    assert english.get_json() == with_cookie.get_json() == {"errors": [
        {"field": "apt", "line": 2, "message": "Options are not allowed, only package names."},
        {"field": "apt", "line": 3, "message": "'curl' is already listed on line 1."},
        {"field": "pip", "line": 2, "message": "'a' is already listed on line 1."},
    ]}
    assert chinese.get_json() == {"errors": [
        {"field": "apt", "line": 2, "message": "不允許選項，只能填寫套件名稱。"},
        {"field": "apt", "line": 3, "message": "'curl' 已列在第 1 行。"},
        {"field": "pip", "line": 2, "message": "'a' 已列在第 1 行。"},
    ]}


def test_api_shape_errors_and_query_parameters_are_translated(api):
    body = api.post("/api/v1/specs", json={"name": "demo", "base_image": 5, "colour": "red", "apt": "curl"},
                    headers=ZH).get_json()
    assert body == {"errors": [
        {"field": "base_image", "line": None, "message": "必須是字串。"},
        {"field": "apt", "line": None, "message": "必須是字串清單，每個項目一個套件。"},
        {"field": "colour", "line": None,
         "message": "未知的欄位；可用的欄位有 name, base_image, pull_secret, apt, pip, conda, test_command, "
                    "auto_activate, base_policy。"},
    ]}
    assert api.get("/api/v1/specs?page=0", headers=ZH).get_json() == {
        "errors": [{"field": "page", "line": None, "message": "不可小於 1。"}]}
    assert api.get("/api/v1/specs?page=0").get_json() == {
        "errors": [{"field": "page", "line": None, "message": "Must be at least 1."}]}


@pytest.mark.parametrize("method, url, status, chinese, english", [
    ("get", "/api/v1/specs/nope", 404, "沒有名稱為 'nope' 的 spec。", "No spec named 'nope'."),
    ("get", f"/api/v1/jobs/{HUGE}", 404, f"沒有這個 id：{HUGE} 大於任何可能的 id（2147483647）。",
     f"No such id: {HUGE} is larger than any id (2147483647)."),
    ("get", "/api/v1/nothing-here", 404, "沒有這個 API 端點；所有端點列在 /api/v1/openapi.yaml。",
     "No such API endpoint; the endpoints are listed in /api/v1/openapi.yaml."),
    ("put", "/api/v1/specs", 405, "請求的 URL 不允許使用此方法。", "The method is not allowed for the requested URL."),
    ("post", "/api/v1/specs", 400, "請求內容必須是 JSON 物件。", "The request body must be a JSON object."),
])
def test_api_error_texts_follow_accept_language(api, method, url, status, chinese, english):
    kwargs = {"data": "[1]", "content_type": "application/json"} if method == "post" else {}
    # Chinese first: a later English request must not keep the language of the one before.
    zh = getattr(api, method)(url, headers=ZH, **kwargs)
    en = getattr(api, method)(url, **kwargs)
    assert zh.status_code == en.status_code == status
    assert zh.get_json() == {"error": chinese}
    assert en.get_json() == {"error": english}


def test_api_refusals_and_sign_in_errors_are_translated(api, client, app):
    outcome = create_spec({"name": "demo", "base_image": "debian:bookworm"})
    outcome.job.status = JobStatus.SUCCEEDED
    db.session.commit()
    answer = api.post(f"/api/v1/jobs/{outcome.job.id}/cancel", headers=ZH)
    assert answer.status_code == 409
    assert answer.get_json() == {"error": f"創建工作 {outcome.job.id} 已經結束（succeeded）。"}

    unsigned = client.get("/api/v1/specs", headers=ZH)
    assert unsigned.status_code == 401
    assert unsigned.get_json() == {"error": "請傳送 API token：'Authorization: Bearer <token>'（flask create-token）。"}

    app.config["MAX_CONTENT_LENGTH"] = 1000
    too_large = api.post("/api/v1/specs", json={"name": "x", "base_image": "debian", "apt": ["curl"] * 400},
                         headers=ZH)
    assert too_large.status_code == 413
    assert too_large.get_json() == {"error": "請求內容太大：最多接受 1000 B（1000 bytes，MAX_CONTENT_LENGTH）。"}


# --- outside the pages ---------------------------------------------------------------------------


def test_validation_is_english_outside_a_request_and_chinese_in_a_zh_tw_one(app):
    data = {"name": "demo", "base_image": "", "apt": "ok\n-y"}
    outside = validate_spec(data)  # an app context alone: a worker, the CLI
    assert [e.message for e in outside.errors] == ["A base image is required.",
                                                    "Options are not allowed, only package names."]
    with app.test_request_context("/specs/new", headers=ZH):
        refresh()  # the fixture's app context outlives requests; each request chooses afresh
        inside = validate_spec(data)
    assert [(e.field, e.line, e.text, e.message) for e in inside.errors] == [
        ("base_image", None, None, "基礎 image 為必填。"),
        ("apt", 2, "-y", "不允許選項，只能填寫套件名稱。"),
    ]


@pytest.mark.parametrize("code", sorted(WERKZEUG_DESCRIPTIONS))
def test_the_translated_werkzeug_descriptions_are_still_werkzeugs_words(app, code):
    # error_description translates werkzeug's default text by its code: the English ids
    # must be what werkzeug says, or an English answer would change.
    with app.test_request_context("/"):
        refresh()
        assert str(WERKZEUG_DESCRIPTIONS[code]) == default_exceptions[code].description
    with app.test_request_context("/", headers=ZH):
        refresh()
        assert str(WERKZEUG_DESCRIPTIONS[code]) != default_exceptions[code].description
