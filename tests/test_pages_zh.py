"""The pages in Traditional Chinese for a browser that asks for zh-TW, with the admin guide's
terms, and the same pages in English for everyone else (templates, app/ui.py)."""
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from app.extensions import db
from app.models import JobStatus, utcnow
from app.specs.service import create_spec, rebuild_spec

pytestmark = pytest.mark.usefixtures("queued_rq_jobs")

ZH = {"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.8"}
EN = {"Accept-Language": "en-US,en;q=0.9"}
SPEC_FORM = {"name": "demo", "base_image": "debian:bookworm", "apt": "curl\n", "pip": "requests\n", "conda": "",
             "auto_activate": "1"}
CATALOGUE = Path(__file__).resolve().parent.parent / "app/translations/zh_Hant/LC_MESSAGES/messages.po"
# Attributes a person reads (hover, screen readers, the narrow table's cell labels, the log's empty text).
READ_ATTRIBUTES = ("title", "aria-label", "placeholder", "data-label", "data-empty", "data-copied-label",
                   "data-copy-failed-label", "data-compare-ready", "data-compare-ticked")


def page(client, url, headers=ZH, status=200):
    response = client.get(url, headers=headers)
    assert response.status_code == status, url
    return response.get_data(as_text=True)


def readable(body):
    """What a person reads on a page: the text between tags, and the read attributes' values.
    Scripts and the sections of other areas' templates (the job page's Packages) are left out."""
    body = re.sub(r"<script\b.*?</script>", " ", body, flags=re.S)
    body = re.sub(r'<section id="packages".*?</section>', " ", body, flags=re.S)
    attributes = re.findall(r'\s(?:%s)="([^"]*)"' % "|".join(READ_ATTRIBUTES), body)
    text = re.sub(r"<[^>]+>", " ", body)
    return " ".join([text, *attributes])


def english_left(body):
    """The catalogue's English phrases that a Chinese page still shows: every message whose
    translation differs from it, in full (those with placeholders: their longest fixed part)."""
    with CATALOGUE.open("rb") as handle:
        catalog = read_po(handle, locale="zh_Hant")
    shown, left = readable(body), []
    for message in catalog:
        if not message.id:
            continue
        english = message.id if isinstance(message.id, str) else message.id[0]
        chinese = message.string if isinstance(message.string, str) else message.string[0]
        if chinese == english:
            continue
        part = max(re.split(r"%\(\w+\)[sd]|<[^>]+>", english), key=len).strip(" .:·,")
        if part in chinese:
            continue  # a word the translation keeps (spec, Image PullSecret)
        # Short words (Edit, live) also stand in specs' names and codes: only their whole word counts.
        if len(part) >= 4 and re.search(rf"(?<![\w/-]){re.escape(part)}(?![\w/-])", shown):
            left.append(part)
    return left


@pytest.fixture
def demo(app, auth):
    """A spec with two jobs: r1 succeeded and active, r2 running."""
    outcome = create_spec(SPEC_FORM)
    assert outcome.ok, outcome.result.errors
    spec, first = outcome.spec, outcome.job
    first.status, first.image = JobStatus.SUCCEEDED, "127.0.0.1:5000/imagebuilder/demo:r1-aaaa"
    first.finished_at = utcnow()
    spec.active_revision = 1
    db.session.commit()
    second = rebuild_spec(spec)
    second.status, second.progress, second.started_at = JobStatus.RUNNING, "STEP 2/5", utcnow()
    db.session.commit()
    return spec, first, second


def test_a_zh_tw_browser_gets_the_spec_list_in_chinese(client, demo):
    body = page(client, "/")
    assert '<html lang="zh-Hant">' in body
    for term in ("客製化 image spec", "名稱", "狀態", "更新時間", "編輯", "刪除", "+ 新增", "登出"):
        assert term in body, term
    # Status badges in words, the machine value kept in the class (tests and styles use it).
    assert '<span class="badge badge-running">創建中</span>' in body
    assert 'title="使用中版號">r1</a>' in body
    assert 'data-label="名稱"' in body and 'data-label="狀態"' in body
    # The delete dialog and the copy button's later words (app.js reads them from <body>).
    assert "刪除 <span data-fill=\"what\"></span> <code data-fill=\"name\"></code>？" in body
    assert 'data-delete-what="spec"' in body
    assert 'data-copied-label="已複製"' in body and 'data-copy-failed-label="請手動選取並複製"' in body
    assert "image 推送至 <code>" in body
    assert english_left(body) == []


def test_the_empty_list_and_the_status_strip_in_chinese(client, auth):
    body = page(client, "/")
    assert "尚無客製化 image spec" in body and "+ 新增第一個 spec" in body
    assert english_left(body) == []
    strip = page(client, "/ops/status")
    assert "queued" not in strip and "running" not in strip and "alive" not in strip
    assert "個排隊中" in strip and "個創建中" in strip and "佇列" in strip


def test_the_add_page_in_chinese_keeps_what_was_typed_after_an_error(client, auth):
    body = page(client, "/specs/new")
    for term in ("新增客製化 image spec", "名稱", "基礎 image", "使用 Image PullSecret", "APT 套件", "Pip 套件",
                 "Conda 套件", "每行一個套件", "確認並創建", "Containerfile 預覽", "測試指令"):
        assert term in body, term
    assert english_left(body) == []

    refused = client.post("/specs/new", headers=ZH, data={**SPEC_FORM, "apt": "curl\nfoo bar\n"})
    answer = refused.get_data(as_text=True)
    assert refused.status_code == 422 and '<html lang="zh-Hant">' in answer
    # The line number in the page's own words; the typed lines are kept in the field.
    assert '<span class="line-no">第 2 行：</span>' in answer
    assert ">\ncurl\nfoo bar\n</textarea>" in answer
    assert 'value="demo"' in answer


def test_the_edit_page_and_its_jobs_tab_in_chinese(client, demo):
    spec, first, second = demo
    body = page(client, "/specs/demo/edit")
    for term in ("Info", "Jobs", "歷程", "重新創建", "立即檢查基礎 image", "確認", "基礎 image 更新時：自動重新創建"):
        assert term in body, term
    assert english_left(body) == []

    jobs = page(client, "/specs/demo/edit?tab=jobs")
    for term in ("更新時間", "版號", "狀態", "觸發原因", "查看記錄", "取消創建", "比較所選", "使用中"):
        assert term in jobs, term
    assert '<span class="badge badge-succeeded">成功</span>' in jobs
    assert "重新創建 <span class=\"muted\">操作者：系統</span>" in jobs
    assert 'data-compare-ticked="勾選兩個工作以比較版號（已勾選 {n} 個）。"' in jobs
    assert english_left(jobs) == []


def test_the_job_page_in_chinese_with_relative_times_and_the_exact_time_on_hover(client, demo):
    spec, first, second = demo
    first.finished_at = datetime(2026, 1, 1, 15, 4, 5)
    first.started_at = utcnow() - timedelta(minutes=3)
    db.session.commit()
    body = page(client, f"/jobs/{first.id}")
    for term in ("創建記錄", "版號", "建立時間", "開始時間", "完成時間", "spec 快照", "觸發原因", "基礎 image",
                 "Image PullSecret", "測試指令", "下載"):
        assert term in body, term
    assert "3 分鐘前</time>" in body
    assert 'title="2026年1月1日 下午3:04:05 UTC"' in body
    assert 'data-empty="尚無輸出。"' in body
    assert english_left(body) == []

    running = page(client, f"/jobs/{second.id}")
    assert '<span class="badge badge-running">創建中</span> <span class="progress">步驟 2/5</span>' in running
    assert "取消創建" in running and "即時" in running


def test_the_sign_in_and_not_found_pages_in_chinese(client, admin):
    login = page(client, "/login")
    for term in ("登入", "使用者名稱", "密碼", "Image Builder 僅供管理員使用"):
        assert term in login, term
    assert english_left(login) == []

    client.post("/login", data={"username": "admin", "password": "correct-horse-battery"})
    missing = page(client, "/specs/nope/edit", status=404)
    assert '<html lang="zh-Hant">' in missing
    assert "找不到頁面" in missing and "<code>/specs/nope/edit</code> 沒有任何內容" in missing
    assert "回到客製化 image spec 列表" in missing
    assert english_left(missing) == []


def test_a_refused_form_is_a_chinese_page_named_in_chinese(client, auth, app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.post("/specs/new", headers=ZH, data={**SPEC_FORM, "apt": "x" * 5000})
    body = response.get_data(as_text=True)
    assert response.status_code == 413 and '<html lang="zh-Hant">' in body
    assert "<h1>請求內容過大</h1>" in body and "<title>請求內容過大 · Image Builder</title>" in body
    english = client.post("/specs/new", headers=EN, data={**SPEC_FORM, "apt": "x" * 5000}).get_data(as_text=True)
    assert "<h1>Request Entity Too Large</h1>" in english and "Back to the specs" in english


def test_english_stays_english(client, demo):
    spec, first, second = demo
    for url in ("/", "/specs/new", "/specs/demo/edit", "/specs/demo/edit?tab=jobs", f"/jobs/{first.id}"):
        body = page(client, url, headers=EN)
        assert '<html lang="en">' in body
        assert not re.search(r"[\u4e00-\u9fff]", body.replace("繁體中文", "")), url  # the switcher's own label
    listed = page(client, "/", headers=EN)
    assert '<span class="badge badge-running">running</span>' in listed
    assert "Image Builder · images are pushed to <code>" in listed
    jobs = page(client, "/specs/demo/edit?tab=jobs", headers=EN)
    assert "<th>Updated At</th><th>Image Revision</th><th>Status</th>" in jobs
    assert "rebuild <span class=\"muted\">by system</span>" in jobs


def test_the_switcher_turns_the_pages_chinese_over_an_english_browser(client, demo):
    assert "Sign out" in page(client, "/", headers=EN)
    client.post("/language", data={"lang": "zh_Hant", "next": "/"})
    body = page(client, "/", headers=EN)
    assert '<html lang="zh-Hant">' in body and "登出" in body and "Sign out" not in body
    assert 'aria-pressed="true">繁體中文</button>' in body


@pytest.mark.parametrize("age, words", [
    (timedelta(seconds=3), "剛剛"),
    (timedelta(seconds=42), "42 秒前"),
    (timedelta(minutes=3), "3 分鐘前"),
    (timedelta(hours=5), "5 小時前"),
    (timedelta(days=45), "1 個月前"),
    (timedelta(days=800), "2 年前"),
    (timedelta(hours=-2), "2 小時後"),
])
def test_relative_times_in_chinese(app, age, words):
    from app.ui import humanize_age

    now = datetime(2026, 6, 1, 12, 0, 0)
    with app.test_request_context("/", headers=ZH):
        assert humanize_age(now - age, now) == words
