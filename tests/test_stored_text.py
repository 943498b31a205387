"""Sentences the services store in English (a job's error, its running step, why it was made,
a spec's last base-check failure) stay English in the database and on English pages, and a
zh-TW page shows them in Chinese with their values as stored (app/i18n/stored.py)."""
import re
from contextlib import contextmanager
from datetime import datetime

import pytest
from flask_babel import refresh

from app.builds import verify
from app.builds.logwriter import LogWriter
from app.builds.podman import PodmanFailure, _raise_for
from app.builds.runner import BuildRun, BuildStopped, SpecInput, _crash_message, finish
from app.extensions import db
from app.i18n import stored as said
from app.i18n.catalog import translations
from app.i18n.stored import PODMAN_ACTIONS, RQ_STATUS_WORDS, STORED, display
from app.models import JobStatus
from app.ops.reconcile import _fail_never_started
from tests.test_pages_zh import EN, ZH, demo, english_left, page  # noqa: F401 (demo: a fixture)

PLACEHOLDER = re.compile(r"%\((\w+)\)s")
CJK = re.compile(r"[\u4e00-\u9fff]")


def sample(msgid):
    """A stored English text made from `msgid`, and the placeholder values it was made with."""
    values = {name: f"v-{name}-1" for name in PLACEHOLDER.findall(msgid)}
    return msgid % values, values


@contextmanager
def request_in(app, headers):
    """A request asking for a language (the locale is chosen afresh, as before each request)."""
    with app.test_request_context("/", headers=headers):
        refresh()
        yield


@pytest.fixture
def zh_request(app):
    with request_in(app, ZH):
        yield


@pytest.fixture
def en_request(app):
    with request_in(app, EN):
        yield


ALL = STORED.msgids + PODMAN_ACTIONS.msgids


@pytest.mark.parametrize("msgid", STORED.msgids)
def test_each_stored_sentence_reads_in_chinese_with_its_values_kept(zh_request, msgid):
    text, values = sample(msgid)
    assert STORED.match(text) == (msgid, values)  # this template, not a look-alike
    shown = display(text)
    assert shown == translations().ugettext(msgid) % values
    assert CJK.search(shown), shown
    for value in values.values():
        assert value in shown


@pytest.mark.parametrize("msgid", STORED.msgids)
def test_each_stored_sentence_stays_as_stored_in_english_and_outside_a_request(app, en_request, msgid):
    text, _values = sample(msgid)
    assert display(text) == text


def test_outside_a_request_stored_text_stays_english(app):
    with app.app_context():
        assert display(said.CANCELLED_BY_ADMIN) == said.CANCELLED_BY_ADMIN


def test_unknown_text_empty_and_none_pass_through(zh_request):
    for text in ("Something the worker wrote years ago.", "The build failed", "registry x", "", None,
                 "Cancelled by an admin", said.TIMED_OUT[:20]):
        assert display(text) == text


def test_every_template_has_a_translation_that_keeps_its_placeholders(zh_request):
    for msgid in (*ALL, *RQ_STATUS_WORDS.values()):
        chinese = translations().ugettext(msgid)
        assert chinese != msgid and CJK.search(chinese), msgid
        assert sorted(set(PLACEHOLDER.findall(chinese))) == sorted(set(PLACEHOLDER.findall(msgid))), msgid
        assert "%" not in PLACEHOLDER.sub("", chinese), msgid


def test_templates_are_distinct_and_their_samples_are_not_taken_by_another():
    assert len(set(ALL)) == len(ALL)
    for msgid in PODMAN_ACTIONS.msgids:
        text, values = sample(msgid)
        assert PODMAN_ACTIONS.match(text) == (msgid, values)


# What the writers store, through their own code, is the English they always stored.
class _Response:
    def __init__(self, status_code, body):
        self.status_code, self._body, self.text = status_code, body, str(body)

    def json(self):
        return self._body


def _stopped_by_timeout():
    run = object.__new__(BuildRun)
    run.heartbeat, run.deadline, run.timeout = None, 0, 3600
    with pytest.raises(BuildStopped) as stopped:
        run.check_stop()
    return str(stopped.value)


def _podman_failure():
    with pytest.raises(PodmanFailure) as failed:
        _raise_for(_Response(500, {"message": "no such image\n"}), said.PODMAN_INSPECTING % {"image": "localhost/x"})
    return str(failed.value)


def _progress_of_a_containerfile_step():
    writer = LogWriter(lambda text, progress, truncated: None, max_bytes=10_000)
    writer.write("STEP 3/7: RUN apt-get update\n")
    writer.flush()
    return writer.progress


PRIVATE = SpecInput(name="demo", base_image="registry.example.com/team/base:1", pull_secret="corp")
PUBLIC = SpecInput(name="demo", base_image="debian:bookworm")
WRITTEN = [
    (_stopped_by_timeout(), "The build timed out after 3600 s (BUILD_TIMEOUT).",
     "創建在 3600 秒後逾時（BUILD_TIMEOUT）。"),
    (_crash_message(type("ShutDownImminentException", (Exception,), {})()),
     "The worker shut down during the build (a deploy or restart); rebuild to try again.",
     "worker 在創建期間關閉（部署或重新啟動）；請重新創建再試一次。"),
    (_crash_message(ValueError("boom")), "Internal error: ValueError: boom", "內部錯誤：ValueError: boom"),
    (BuildRun._pull_error(None, PRIVATE, "registry.example.com", "unauthorized: authentication required"),
     "Credential 'corp' was refused by registry registry.example.com for registry.example.com/team/base:1: "
     "check its username and password on the Credentials page.",
     "registry registry.example.com 拒絕了用於 registry.example.com/team/base:1 的 registry 憑證 'corp'："
     "請到 Registry 憑證頁面檢查它的使用者名稱與密碼。"),
    (BuildRun._pull_error(None, PUBLIC, "docker.io", "denied"),
     "The base image debian:bookworm needs a registry credential (docker.io asked for one, or the image does not "
     "exist there): tick 'use image pull secret' and choose a credential for docker.io.",
     "基礎 image debian:bookworm 需要 registry 憑證（docker.io 要求提供，或該 image 不存在於那裡）："
     "請勾選「使用 Image PullSecret」並選擇 docker.io 的 registry 憑證。"),
    (BuildRun._pull_error(None, PUBLIC, "docker.io", "manifest unknown"),
     "The base image debian:bookworm was not found in registry docker.io: manifest unknown",
     "在 registry docker.io 中找不到基礎 image debian:bookworm：manifest unknown"),
    (BuildRun._pull_error(None, PUBLIC, "docker.io", "i/o timeout"),
     "Pulling the base image debian:bookworm failed: i/o timeout", "拉取基礎 image debian:bookworm 失敗：i/o timeout"),
    (verify._summary(["apt line 1 'curl=7': installed 8", "pip line 2 'jq': not installed"]),
     "The image does not have what the spec asks for: apt line 1 'curl=7': installed 8; pip line 2 'jq': not "
     "installed. Nothing was pushed.",
     "image 不符合 spec 的要求：apt line 1 'curl=7': installed 8; pip line 2 'jq': not installed。沒有推送任何內容。"),
    (verify._summary(["a", "b", "c", "d", "e"]),
     "The image does not have what the spec asks for: a; b; c (and 2 more in the log). Nothing was pushed.",
     "image 不符合 spec 的要求：a; b; c（記錄中還有 2 項）。沒有推送任何內容。"),
    (_podman_failure(), "Podman failed inspecting image localhost/x: no such image",
     "Podman 失敗（檢視 image localhost/x）：no such image"),
    (_progress_of_a_containerfile_step(), "STEP 3/7", "步驟 3/7"),
    (said.WORKER_LOST % {"since": f"{datetime(2026, 3, 4, 5, 6, 7):%Y-%m-%d %H:%M:%S}"},
     "worker lost (no heartbeat since 2026-03-04 05:06:07 UTC)", "worker 遺失（自 2026-03-04 05:06:07 UTC 起沒有 heartbeat）"),
]


@pytest.mark.parametrize(("stored", "english", "chinese"), WRITTEN, ids=[row[1][:40] for row in WRITTEN])
def test_what_the_writers_store_is_unchanged_english_and_reads_in_chinese(app, stored, english, chinese):
    assert stored == english
    with request_in(app, EN):
        assert display(stored) == english
    with request_in(app, ZH):
        assert display(stored) == chinese


@pytest.mark.usefixtures("queued_rq_jobs")
def test_a_never_started_job_names_rqs_state_in_words(app, demo):  # noqa: F811
    spec, first, second = demo
    second.status = JobStatus.QUEUED
    db.session.commit()

    class RQJobEnded:
        def get_status(self, refresh=False):
            return "failed"

    assert _fail_never_started(second.id, datetime(2026, 1, 1), RQJobEnded())
    db.session.refresh(second)
    assert second.error == ("never started: its RQ job ended failed again after a retry, before the worker took it "
                            "(details in the RQ dashboard, /ops/rq)")
    with request_in(app, ZH):
        assert display(second.error) == ("從未開始：重試後它的 RQ 工作又以「失敗」結束，worker 尚未接手"
                                         "（詳情見 RQ 儀表板 /ops/rq）")


# -- the pages ----------------------------------------------------------------------------

@pytest.mark.usefixtures("queued_rq_jobs")
def test_the_job_page_shows_a_stored_error_in_chinese_and_as_stored_in_english(client, demo):  # noqa: F811
    spec, first, second = demo
    assert finish(second.id, JobStatus.FAILED, _stopped_by_timeout())
    body = page(client, f"/jobs/{second.id}")
    assert "<strong>失敗：</strong> 創建在 3600 秒後逾時（BUILD_TIMEOUT）。" in body
    assert english_left(body) == []
    english = page(client, f"/jobs/{second.id}", headers=EN)
    assert "<strong>Failed:</strong> The build timed out after 3600 s (BUILD_TIMEOUT)." in english
    db.session.refresh(second)
    assert second.error == "The build timed out after 3600 s (BUILD_TIMEOUT)."  # the row stays English


@pytest.mark.usefixtures("queued_rq_jobs")
def test_the_jobs_tab_shows_the_running_step_and_a_trigger_detail_in_chinese(client, demo):  # noqa: F811
    spec, first, second = demo
    second.progress = said.VERIFYING
    first.trigger_kind, first.trigger_detail = "pinned", said.PINNED_BASE_DETAIL % {"revision": 1}
    db.session.commit()
    jobs = page(client, "/specs/demo/edit?tab=jobs")
    assert '<span class="progress">驗證 image</span>' in jobs
    assert '<span class="trigger-detail muted">鎖定為 r1 的版本與基礎 image digest</span>' in jobs
    assert english_left(jobs) == []
    english = page(client, "/specs/demo/edit?tab=jobs", headers=EN)
    assert '<span class="progress">verifying</span>' in english
    assert "pinned to r1&#39;s versions and base digest" in english


@pytest.mark.usefixtures("queued_rq_jobs")
def test_the_edit_page_shows_the_last_base_check_failure_in_chinese(client, demo):  # noqa: F811
    spec, first, second = demo
    spec.base_check_error = said.REGISTRY_REFUSED_CREDENTIALS % {"host": "registry.example.com", "status": 401}
    db.session.commit()
    body = page(client, "/specs/demo/edit")
    assert "上次檢查基礎 image 失敗：registry registry.example.com 拒絕了設定的憑證（HTTP 401）" in body
    assert english_left(body) == []
    english = page(client, "/specs/demo/edit", headers=EN)
    assert "Last base check failed: registry registry.example.com refused the configured credentials (HTTP 401)" \
        in english
