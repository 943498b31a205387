"""Both languages in a real browser: an admin switches with the header's control and walks
add (with a mistake), the list, edit, the Jobs tab and delete in 繁體中文 and in English,
on a desktop and on a 390 px wide phone screen (screenshots of each under test-artifacts/).

No worker runs: the test moves the jobs in the database itself, the way the worker would.
Validation messages come from the validators (their translation is not this module's
concern); the page chrome around them, and what was typed, is.
"""
import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, utcnow

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@dataclass(frozen=True)
class Words:
    """What the pages say in one language (the catalogue's translations of the seed's terms)."""

    lang: str  # <html lang>
    switch_to: str  # the header button that chooses this language
    add: str
    heading: str
    save_and_build: str
    save: str
    line_2: str
    preview_waits: str
    name: str
    status: str
    queued: str
    succeeded: str
    edit: str
    delete: str
    cancel: str
    copy: str
    copied: str
    updated_at: str
    revision: str
    view_log: str
    compare_hint: str
    delete_title: str
    no_specs: str
    sign_out: str


ZH = Words(
    lang="zh-Hant", switch_to="繁體中文", add="+ 新增", heading="客製化 image spec", save_and_build="確認並創建",
    save="確認", line_2="第 2 行", preview_waits="這裡會顯示預覽", name="名稱", status="狀態", queued="排隊中",
    succeeded="成功", edit="編輯", delete="刪除", cancel="取消", copy="複製", copied="已複製",
    updated_at="更新時間", revision="版號", view_log="查看記錄",
    compare_hint="勾選兩個工作以比較版號（已勾選 0 個）。", delete_title="刪除 spec {name}？",
    no_specs="尚無客製化 image spec", sign_out="登出",
)
EN = Words(
    lang="en", switch_to="English", add="+ Add", heading="Image specs", save_and_build="Save and build",
    save="Save", line_2="Line 2", preview_waits="The preview appears once", name="Name", status="Status",
    queued="queued", succeeded="succeeded", edit="Edit", delete="Delete", cancel="Cancel", copy="Copy",
    copied="Copied", updated_at="Updated At", revision="Image Revision", view_log="View log",
    compare_hint="Tick two jobs to compare their revisions (0 ticked).", delete_title="Delete spec {name}?",
    no_specs="No image specs yet", sign_out="Sign out",
)


def finish_job(live_server, spec_name, revision):
    """What the worker and the activation do for a build that succeeds."""
    with live_server.app_context():
        spec = db.session.scalar(select(ImageSpec).where(ImageSpec.name == spec_name))
        job = db.session.scalar(select(BuildJob).where(BuildJob.spec_id == spec.id, BuildJob.revision == revision))
        job.status, job.finished_at = JobStatus.SUCCEEDED, utcnow()
        job.image = f"127.0.0.1:5000/imagebuilder/{spec_name}:r{revision}-test"
        spec.active_revision = revision
        db.session.commit()
        return job.image


def switch_language(page, words):
    page.locator("form.language").get_by_role("button", name=words.switch_to).click()
    expect(page.locator("html")).to_have_attribute("lang", words.lang)
    expect(page.locator("form.language").get_by_role("button", name=words.switch_to)).to_have_attribute(
        "aria-pressed", "true")


def fits_the_screen(page):
    """Nothing sticks out sideways (wide tables scroll inside their card, long words wrap)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the screen"


def shoot(page, screenshot, name):
    """The page on the desktop, then on the phone screen, both checked for sideways overflow."""
    fits_the_screen(page)
    screenshot(f"{name}-desktop")
    page.set_viewport_size(PHONE)
    fits_the_screen(page)
    screenshot(f"{name}-narrow")
    page.set_viewport_size(DESKTOP)


def walk(page, live_server, screenshot, words, spec_name):
    """Add (with a mistake), list, edit, Jobs tab, delete: in the language the page is in."""
    prefix = f"lang-{words.lang}"
    expect(page.locator("h1")).to_have_text(words.heading)
    expect(page.get_by_role("button", name=words.sign_out)).to_be_visible()

    # Add, with a bad APT line: reported next to the field while typing, and after Save.
    page.get_by_role("link", name=words.add).first.click()
    page.fill("#name", spec_name)
    page.fill("#base_image", "debian:bookworm")
    page.fill("#apt", "curl\nfoo bar")
    expect(page.locator("#errors-apt")).to_contain_text(words.line_2)
    expect(page.locator("#containerfile-preview")).to_contain_text(words.preview_waits)
    expect(page.locator("label[for=name]")).to_have_text(words.name)
    page.get_by_role("button", name=words.save_and_build).click()
    expect(page.locator("html")).to_have_attribute("lang", words.lang)
    expect(page.locator("#errors-apt")).to_contain_text(words.line_2)
    expect(page.locator("#name")).to_have_value(spec_name)
    expect(page.locator("#apt")).to_have_value("curl\nfoo bar")
    shoot(page, screenshot, f"{prefix}-01-add-error")

    page.fill("#apt", "curl\ngit")
    expect(page.locator("#containerfile-preview")).to_contain_text("FROM debian:bookworm")
    page.get_by_role("button", name=words.save_and_build).click()
    page.wait_for_url(re.compile(r"/$"))
    row = page.locator("#spec-table tbody tr", has_text=spec_name)
    expect(row.locator(".badge")).to_have_text(words.queued)
    expect(row.locator(".badge")).to_have_class(re.compile(r"\bbadge-queued\b"))
    expect(page.locator("#spec-table thead")).to_contain_text(words.status)

    # The list follows the job; the copy button answers in the page's language.
    image = finish_job(live_server, spec_name, 1)
    expect(row.locator(".badge")).to_have_text(words.succeeded)
    expect(row.locator(".image")).to_contain_text(image)
    row.get_by_role("button", name=words.copy, exact=True).click()
    expect(row.get_by_role("button", name=words.copied)).to_be_visible()
    expect(row.get_by_role("button", name=words.copy, exact=True)).to_be_visible()  # back after 1.5 s
    shoot(page, screenshot, f"{prefix}-02-list")

    # Edit: a pip change saves and starts r2.
    row.get_by_role("link", name=words.edit).click()
    expect(page.locator("#name")).to_have_attribute("readonly", "")
    page.fill("#pip", "requests")
    expect(page.locator("#containerfile-preview")).to_contain_text("requests")
    shoot(page, screenshot, f"{prefix}-03-edit")
    page.get_by_role("button", name=words.save, exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("r2")

    # The Jobs tab: its headings, badges and the compare hint (revisions.js) in the page's language.
    page.get_by_role("link", name=re.compile("^Jobs")).click()
    jobs = page.locator("#jobs-table tbody tr")
    expect(jobs).to_have_count(2)
    expect(page.locator("#jobs-table thead")).to_contain_text(words.updated_at)
    expect(page.locator("#jobs-table thead")).to_contain_text(words.revision)
    expect(jobs.nth(0).locator(".badge")).to_have_text(words.queued)
    expect(jobs.nth(1).locator(".badge")).to_have_text(words.succeeded)
    expect(jobs.nth(1).get_by_role("link", name=words.view_log)).to_be_visible()
    expect(page.locator("[data-compare-hint]")).to_have_text(words.compare_hint)
    shoot(page, screenshot, f"{prefix}-04-jobs-tab")

    # Delete through the dialog, from the list (once r2 has ended: a row that polls while its
    # spec is deleted would be answered 404).
    finish_job(live_server, spec_name, 2)
    page.get_by_role("navigation").first.get_by_role("link").first.click()
    row = page.locator("#spec-table tbody tr", has_text=spec_name)
    expect(page.locator("#spec-table tbody tr[hx-trigger]")).to_have_count(0)
    row.get_by_role("button", name=words.delete).click()
    dialog = page.locator("#delete-dialog")
    expect(dialog.locator("h2")).to_have_text(words.delete_title.format(name=spec_name))
    dialog.get_by_role("button", name=words.cancel).click()
    expect(dialog).to_be_hidden()
    row.get_by_role("button", name=words.delete).click()
    shoot(page, screenshot, f"{prefix}-05-delete-dialog")
    dialog.get_by_role("button", name=words.delete).click()
    expect(page.locator("#spec-table tbody tr", has_text=spec_name)).to_have_count(0)
    expect(page.get_by_text(words.no_specs)).to_be_visible()


def test_walk_the_pages_in_both_languages_switching_in_the_header(signed_in, live_server, screenshot):
    page = signed_in
    expect(page.locator("html")).to_have_attribute("lang", "en")
    switch_language(page, ZH)
    walk(page, live_server, screenshot, ZH, "zh-demo")
    # The choice is remembered (a cookie): a fresh load of another page stays Chinese.
    page.goto("/specs/new")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hant")
    page.goto("/")
    switch_language(page, EN)
    walk(page, live_server, screenshot, EN, "en-demo")


def test_a_zh_tw_browser_signs_in_in_chinese(page, screenshot):
    page.set_extra_http_headers({"Accept-Language": "zh-TW,zh;q=0.9"})
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hant")
    expect(page.locator("h1")).to_have_text("登入")
    expect(page.locator("label[for=username]")).to_have_text("使用者名稱")
    shoot(page, screenshot, "lang-zh-Hant-00-sign-in")
    page.fill("#username", "admin")
    page.fill("#password", "correct-horse-battery")
    page.get_by_role("button", name="登入").click()
    expect(page.locator("h1")).to_have_text("客製化 image spec")
    expect(page.get_by_text("尚無客製化 image spec")).to_be_visible()
    # The footer's status strip asks for itself once the page has loaded.
    expect(page.locator("#ops-status")).to_contain_text("worker")
    expect(page.locator("#ops-status")).not_to_contain_text("alive")
    shoot(page, screenshot, "lang-zh-Hant-00-empty-list")
