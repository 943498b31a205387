"""The catalogue's pages, from the admin's side: list, add, edit, jobs, job page and log, delete."""
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.builds.queue import rq_job_id
from app.builds.logs import append_log_chunk
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, LogChunk
from app.specs.service import create_spec, rebuild_spec
from app.ui import humanize_age, relative_time

pytestmark = pytest.mark.usefixtures("queued_rq_jobs")  # empties this test's RQ queue afterwards

SPEC_FORM = {"name": "demo", "base_image": "debian:bookworm", "apt": "curl\n", "pip": "requests\n", "conda": "",
             "auto_activate": "1"}


def make_spec(name="demo", **fields):
    outcome = create_spec({**SPEC_FORM, "name": name, **fields})
    assert outcome.ok, outcome.result.errors
    return outcome.spec, outcome.job


def set_job(job, **values):
    for key, value in values.items():
        setattr(job, key, value)
    db.session.commit()


def job_count(spec_name):
    return db.session.scalar(
        select(func.count(BuildJob.id)).join(ImageSpec).where(ImageSpec.name == spec_name)
    )


def html(response):
    return response.get_data(as_text=True)


def element(body, element_id):
    """The opening tag of the element with this id."""
    match = re.search(rf'<[a-z]+ id="{re.escape(element_id)}"[^>]*>', body)
    assert match, f"no element #{element_id}"
    return match.group(0)


# --- login -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/"),
        ("get", "/specs/new"),
        ("post", "/specs/validate"),
        ("get", "/specs/demo/edit"),
        ("get", "/specs/demo/row"),
        ("post", "/specs/demo/delete"),
        ("get", "/jobs/1"),
        ("get", "/jobs/1/log"),
        ("get", "/credentials/"),
    ],
)
def test_every_page_needs_login(client, admin, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_page_signs_in_and_shows_the_navigation(client, admin):
    assert "Sign in" in html(client.get("/login"))
    wrong = client.post("/login", data={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401 and "Wrong username or password" in html(wrong)
    client.post("/login", data={"username": "admin", "password": "correct-horse-battery"})
    body = html(client.get("/"))
    assert 'href="/credentials/"' in body
    assert re.search(r'<form class="signout" method="post" action="/logout">\s*<input type="hidden" name="csrf_token"', body)


# --- spec list -------------------------------------------------------------------------------


def test_empty_list_says_what_to_do(client, auth):
    body = html(client.get("/"))
    assert "No image specs yet" in body
    assert 'href="/specs/new"' in body
    assert "<table" not in body


def test_list_shows_latest_status_progress_and_the_active_image(client, auth):
    spec, first = make_spec("demo")
    set_job(first, status=JobStatus.SUCCEEDED, image="127.0.0.1:5000/imagebuilder/demo:r1-aaaa", digest="sha256:" + "a" * 64)
    set_job(spec, active_revision=1)
    second = rebuild_spec(spec)
    set_job(second, status=JobStatus.RUNNING, progress="STEP 3/5")
    idle, idle_job = make_spec("idle")
    set_job(idle_job, status=JobStatus.FAILED, error="apt-get failed")

    body = html(client.get("/"))
    demo_row = element(body, f"spec-row-{spec.id}")
    assert 'hx-get="/specs/demo/row"' in demo_row and 'hx-trigger="every 1s"' in demo_row
    assert "STEP 3/5" in body
    # The active image stays visible while the rebuild runs, with its revision and a copy button.
    assert 'data-copy="127.0.0.1:5000/imagebuilder/demo:r1-aaaa"' in body
    assert f'href="/jobs/{first.id}" title="The active revision">r1</a>' in body
    idle_row = element(body, f"spec-row-{idle.id}")
    assert "hx-trigger" not in idle_row
    assert "badge-failed" in body
    assert 'href="/specs/idle/edit"' in body and 'data-delete-url="/specs/idle/delete"' in body


def test_row_fragment_polls_only_while_its_job_is_active(client, auth):
    spec, job = make_spec("demo")
    active = html(client.get("/specs/demo/row"))
    assert active.lstrip().startswith(f'<tr id="spec-row-{spec.id}"')
    assert 'hx-trigger="every 1s"' in active and "badge-queued" in active
    assert "<html" not in active

    set_job(job, status=JobStatus.SUCCEEDED, image="registry.test/demo:r1-x")
    set_job(spec, active_revision=1)
    ended = html(client.get("/specs/demo/row"))
    assert "hx-trigger" not in ended and "hx-get" not in ended
    assert "badge-succeeded" in ended and "registry.test/demo:r1-x" in ended


def test_a_rows_words_in_the_list_and_its_refresh_in_both_languages(client, auth):
    """The words every row repeats are translated once a page (row_words): each one lands
    where it belongs, in the page's language, in the list and in the htmx row alike."""
    spec, job = make_spec("demo")
    set_job(job, status=JobStatus.SUCCEEDED, image="registry.test/demo:r1-x")
    set_job(spec, active_revision=1)
    english = ('data-label="Name"', 'data-label="Status"', 'data-label="Updated"', 'title="The active revision"',
               'title="Copy to the clipboard">Copy</button>', 'data-delete-what="spec">Delete</button>', '>Edit</a>')
    chinese = ('data-label="名稱"', 'data-label="狀態"', 'data-label="更新時間"', 'title="使用中版號"',
               'title="複製到剪貼簿">複製</button>', '>刪除</button>', '>編輯</a>')
    for language, words in (("en", english), ("zh-Hant", chinese)):
        for url in ("/", "/specs/demo/row"):
            body = html(client.get(url, headers={"Accept-Language": language}))
            start = body.index(element(body, f"spec-row-{spec.id}"))
            row = body[start:body.index("</tr>", start)]
            for word in words:
                assert word in row, (language, url, word)


def test_unknown_spec_and_job_are_404(client, auth):
    for url in ("/specs/nope/row", "/specs/nope/edit", "/jobs/999", "/jobs/999/log", "/jobs/999/row"):
        assert client.get(url).status_code == 404, url
    assert client.post("/specs/nope/delete").status_code == 404
    assert client.post("/specs/nope/rebuild").status_code == 404
    assert "There is nothing at <code>/specs/nope/edit</code>" in html(client.get("/specs/nope/edit"))


# --- add -------------------------------------------------------------------------------------


def test_add_page_has_the_fields_the_preview_and_live_validation(client, auth):
    body = html(client.get("/specs/new"))
    form = element(body, "spec-form")
    assert 'hx-post="/specs/validate"' in form and 'hx-trigger="input changed delay:400ms"' in form
    for field in ("name", "base_image", "apt", "pip", "conda", "test_command"):
        assert f'name="{field}"' in body
    assert "one package per line" in body
    assert 'id="containerfile-preview"' in body
    assert "switches" in body and "root" in body  # the note on what the build adds
    # No credential stored yet: the pull-secret choice offers to add one.
    assert 'href="/credentials/new"' in body


def test_add_with_errors_answers_422_keeps_everything_typed_and_names_the_lines(client, auth):
    typed = {
        "name": "Demo Spec",
        "base_image": "debian:bookworm",
        "apt": "curl\r\nfoo bar\r\n# a comment\r\n\r\nCurl",
        "pip": "requests\n--extra-index-url http://x\n",
        "conda": "",
    }
    response = client.post("/specs/new", data=typed)
    assert response.status_code == 422
    body = html(response)
    # Errors next to their fields, with line numbers and reasons.
    apt_errors = body[body.index('id="errors-apt"'):body.index('id="errors-pip"')]
    assert "Line 2" in apt_errors and "spaces are not allowed" in apt_errors
    assert "Line 5" in apt_errors and "lowercase" in apt_errors
    pip_errors = body[body.index('id="errors-pip"'):body.index('id="errors-conda"')]
    assert "Line 2" in pip_errors and "--extra-index-url" in pip_errors
    assert "Only lowercase letters" in body[body.index('id="errors-name"'):]
    # Everything typed comes back verbatim (the textarea keeps a leading newline marker).
    assert 'value="Demo Spec"' in body
    assert ">\ncurl\r\nfoo bar\r\n# a comment\r\n\r\nCurl</textarea>" in body
    assert ">\nrequests\n--extra-index-url http://x\n</textarea>" in body
    assert db.session.scalar(select(func.count(ImageSpec.id))) == 0


def test_add_keeps_html_in_input_escaped(client, auth):
    response = client.post("/specs/new", data={**SPEC_FORM, "apt": "<script>alert(1)</script>"})
    assert response.status_code == 422
    body = html(response)
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_add_saves_starts_a_queued_job_and_names_its_revision(client, auth, queued_rq_jobs):
    response = client.post("/specs/new", data=SPEC_FORM)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    job = db.session.scalar(select(BuildJob))
    assert job.status == JobStatus.QUEUED and job.revision == 1
    assert queued_rq_jobs() == [rq_job_id(job.id)]
    body = html(client.get("/"))
    assert "Saved demo." in body and f'href="/jobs/{job.id}">r1</a>' in body
    assert "badge-queued" in body


def test_pull_secret_ticked_without_a_choice_is_an_error(client, auth):
    response = client.post("/specs/new", data={**SPEC_FORM, "use_pull_secret": "1", "pull_secret": ""})
    assert response.status_code == 422
    assert "Choose a registry credential" in html(response)
    assert job_count("demo") == 0


def test_validate_answers_errors_by_line_and_the_preview_out_of_band(client, auth):
    bad = html(client.post("/specs/validate", data={**SPEC_FORM, "pip": "requests\nx @ https://h/x.whl"}))
    assert re.search(r'<div class="field-errors" id="errors-pip"[^>]*hx-swap-oob="true"', bad)
    assert "Line 2" in bad and "Direct URL references" in bad
    assert "The preview appears once" in bad

    good = html(client.post("/specs/validate", data=SPEC_FORM))
    assert '<div id="containerfile-preview" hx-swap-oob="true">' in good
    assert "FROM debian:bookworm" in good and "pip install --no-cache-dir" in good
    assert "<li>" not in good  # no errors anywhere


def test_the_test_command_is_validated_previewed_and_kept(client, auth):
    bad = html(client.post("/specs/validate", data={**SPEC_FORM, "test_command": "ls\tid"}))
    assert re.search(r'<div class="field-errors" id="errors-test_command"[^>]*hx-swap-oob="true"', bad)
    assert "Only printable characters" in bad
    good = html(client.post("/specs/validate", data={**SPEC_FORM, "test_command": "curl --version && echo '<ok>'"}))
    assert "# curl --version &amp;&amp; echo &#39;&lt;ok&gt;&#39;" in good  # in the preview, escaped

    assert client.post("/specs/new", data={**SPEC_FORM, "test_command": "curl --version"}).status_code == 302
    body = html(client.get("/specs/demo/edit"))
    assert re.search(r'<input id="test_command" name="test_command" value="curl --version"', body)
    job = db.session.scalar(select(BuildJob))
    assert "<code>curl --version</code>" in html(client.get(f"/jobs/{job.id}"))


def test_validate_is_quiet_about_fields_not_filled_yet(client, auth):
    body = html(client.post("/specs/validate", data={"name": "", "base_image": "", "apt": "curl"}))
    assert "<li>" not in body
    make_spec("demo")
    taken = html(client.post("/specs/validate", data=SPEC_FORM))
    assert "already exists" in taken
    # Editing the spec itself: its own name is not a clash.
    editing = html(client.post("/specs/validate?spec=demo", data=SPEC_FORM))
    assert "already exists" not in editing


# --- edit, jobs tab, rebuild ----------------------------------------------------------------


def test_edit_shows_the_stored_spec_with_the_name_read_only(client, auth):
    make_spec("demo", apt="curl\ngit\n")
    body = html(client.get("/specs/demo/edit"))
    assert re.search(r'<input id="name" name="name" value="demo" readonly', body)
    assert ">\ncurl\ngit</textarea>" in body
    assert 'hx-post="/specs/validate?spec=demo"' in body
    assert "Rebuild" in body and 'action="/specs/demo/rebuild"' in body


def test_edit_without_a_change_starts_no_job_and_says_so(client, auth):
    make_spec("demo")
    # The same packages in another order and spelling normalise to the same spec.
    response = client.post("/specs/demo/edit", data={**SPEC_FORM, "apt": "\ncurl\n", "pip": "Requests"}, follow_redirects=True)
    assert "No changes; no new build started." in html(response)
    assert job_count("demo") == 1


def test_edit_with_a_change_starts_the_next_job(client, auth, queued_rq_jobs):
    make_spec("demo")
    response = client.post("/specs/demo/edit", data={**SPEC_FORM, "pip": "requests\nnumpy"}, follow_redirects=True)
    assert job_count("demo") == 2
    latest = db.session.scalar(select(BuildJob).order_by(BuildJob.revision.desc()))
    assert latest.spec_snapshot["pip"] == ["numpy", "requests"]
    assert f'href="/jobs/{latest.id}">r2</a>' in html(response)
    assert rq_job_id(latest.id) in queued_rq_jobs()


def test_edit_with_errors_keeps_input_and_changes_nothing(client, auth):
    make_spec("demo")
    response = client.post("/specs/demo/edit", data={**SPEC_FORM, "pip": "requests\n-e ."})
    assert response.status_code == 422
    body = html(response)
    assert "Line 2" in body and ">\nrequests\n-e .</textarea>" in body
    assert job_count("demo") == 1
    assert db.session.scalar(select(ImageSpec.pip)) == ["requests"]


def test_jobs_tab_lists_jobs_and_active_ones_poll(client, auth):
    spec, first = make_spec("demo")
    set_job(first, status=JobStatus.SUCCEEDED)
    second = rebuild_spec(spec)
    set_job(second, status=JobStatus.RUNNING, progress="STEP 2/4")
    body = html(client.get("/specs/demo/edit?tab=jobs"))
    assert "Updated At" in body and "Image Revision" in body
    assert f'href="/jobs/{first.id}">r1</a>' in body and first.tag in body
    assert f'href="/jobs/{second.id}">r2</a>' in body and "STEP 2/4" in body
    assert body.count("View log") == 2
    assert 'hx-trigger="every 1s"' in element(body, f"job-row-{second.id}")
    assert "hx-trigger" not in element(body, f"job-row-{first.id}")
    assert "<time datetime=" in body

    row = html(client.get(f"/jobs/{second.id}/row"))
    assert row.lstrip().startswith(f'<tr id="job-row-{second.id}"') and "every 1s" in row
    set_job(second, status=JobStatus.SUCCEEDED)
    assert "hx-trigger" not in html(client.get(f"/jobs/{second.id}/row"))


def test_jobs_tab_pages_by_25(client, auth):
    spec, _ = make_spec("demo")
    for _ in range(29):
        rebuild_spec(spec)
    first_page = html(client.get("/specs/demo/edit?tab=jobs"))
    assert first_page.count('id="job-row-') == 25
    assert ">r30</a>" in first_page and ">r6</a>" in first_page and ">r5</a>" not in first_page
    assert "Page 1 of 2" in first_page
    assert 'href="/specs/demo/edit?page=2&amp;tab=jobs">Older →</a>' in first_page
    second_page = html(client.get("/specs/demo/edit?tab=jobs&page=2"))
    assert second_page.count('id="job-row-') == 5 and ">r1</a>" in second_page
    assert 'href="/specs/demo/edit?page=1&amp;tab=jobs">← Newer</a>' in second_page


def test_rebuild_starts_a_job_from_either_tab(client, auth):
    make_spec("demo")
    response = client.post("/specs/demo/rebuild", data={"tab": "jobs"})
    assert response.headers["Location"] == "/specs/demo/edit?tab=jobs"
    assert job_count("demo") == 2
    assert client.post("/specs/demo/rebuild").headers["Location"] == "/specs/demo/edit"
    assert job_count("demo") == 3


# --- job page and its log -------------------------------------------------------------------


def test_job_page_shows_status_times_snapshot_and_containerfile(client, auth):
    make_spec("demo", apt="curl\ngit\n")
    job = db.session.scalar(select(BuildJob))
    set_job(
        job,
        status=JobStatus.SUCCEEDED,
        image="127.0.0.1:5000/imagebuilder/demo:r1-abc",
        digest="sha256:" + "b" * 64,
        size_bytes=50 * 1024 * 1024,
        started_at=datetime(2026, 1, 1, 12, 0, 0),
        finished_at=datetime(2026, 1, 1, 12, 1, 0),
    )
    body = html(client.get(f"/jobs/{job.id}"))
    assert "demo" in body and "r1" in body and job.tag in body
    assert "badge-succeeded" in body
    assert 'title="2026-01-01 12:01:00 UTC"' in body
    assert 'data-copy="127.0.0.1:5000/imagebuilder/demo:r1-abc"' in body
    assert f'data-copy="sha256:{"b" * 64}"' in body
    assert "50.0 MB" in body
    assert "<code>curl</code>" in body and "<code>git</code>" in body
    assert "FROM debian:bookworm" in body and "apt-get install -y --no-install-recommends" in body
    assert '<div id="log"' in body
    # Finished: the log is in the page and the page asks for nothing.
    poller = element(body, "log-poller")
    assert "hx-get" not in poller and "hx-trigger" not in poller and "end of log" in body


def test_job_page_shows_the_containerfile_as_built_once_the_build_wrote_it(client, auth):
    _, job = make_spec("demo")
    built = job.spec_snapshot["containerfile"] + "USER app\n"
    set_job(job, spec_snapshot={**job.spec_snapshot, "containerfile_built": built})
    body = html(client.get(f"/jobs/{job.id}"))
    assert "Exactly as built" in body and "USER app" in body


def test_failed_job_page_shows_the_error_summary(client, auth):
    _, job = make_spec("demo")
    set_job(job, status=JobStatus.FAILED, error="E: Unable to locate package nosuchpkg")
    body = html(client.get(f"/jobs/{job.id}"))
    assert "badge-failed" in body and "E: Unable to locate package nosuchpkg" in body


def test_active_job_page_shows_its_log_so_far_and_waits_for_more(client, auth):
    _, job = make_spec("demo")
    set_job(job, status=JobStatus.RUNNING)
    append_log_chunk(job, "==> [1/5] Pulling base image\npulled\n")
    db.session.commit()
    body = html(client.get(f"/jobs/{job.id}"))
    assert '<details class="log-step" id="step-1"' in body and " open><summary>" in body
    assert '<div class="line" id="L2"><a class="ln" href="#L2">2</a><span class="lt">pulled</span></div>' in body
    poller = element(body, "log-poller")
    assert 'hx-trigger="load, log:again"' in poller and 'hx-target="#log-incoming"' in poller
    url = poller_url(body, wait=True)
    assert "offset=1&" in url and "line=2&" in url and "step=1&" in url and "wait=1" in url


def test_cancel_a_queued_job_and_ask_a_running_one_to_stop(client, auth):
    spec, queued = make_spec("demo")
    assert 'action="/jobs/%d/cancel"' % queued.id in html(client.get(f"/jobs/{queued.id}"))
    body = html(client.post(f"/jobs/{queued.id}/cancel", follow_redirects=True))
    assert "Cancelling demo r1" in body and "badge-cancelled" in body
    assert "Cancel build" not in body

    running = rebuild_spec(spec)
    set_job(running, status=JobStatus.RUNNING)
    body = html(client.post(f"/jobs/{running.id}/cancel", follow_redirects=True))
    assert "cancelling…" in body and "Cancel build" not in body
    db.session.refresh(running)
    assert running.cancel_requested and running.status == JobStatus.RUNNING

    set_job(running, status=JobStatus.SUCCEEDED)
    assert "had already finished" in html(client.post(f"/jobs/{running.id}/cancel", follow_redirects=True))
    assert client.post("/jobs/999/cancel").status_code == 404


def table_row(body, row_id):
    """The whole <tr> with this id."""
    match = re.search(rf'<tr id="{re.escape(row_id)}".*?</tr>', body, re.S)
    assert match, f"no row #{row_id}"
    return match.group(0)


def test_cancel_from_the_list_and_the_jobs_tab_comes_back_there(client, auth):
    spec, job = make_spec("demo")
    cancel_form = f'action="/jobs/{job.id}/cancel"'
    row = table_row(html(client.get("/")), f"spec-row-{spec.id}")
    assert cancel_form in row and 'name="next" value="/"' in row
    jobs_row = table_row(html(client.get("/specs/demo/edit?tab=jobs")), f"job-row-{job.id}")
    assert cancel_form in jobs_row and "tab=jobs" in jobs_row

    response = client.post(f"/jobs/{job.id}/cancel", data={"next": "/specs/demo/edit?tab=jobs"})
    assert response.status_code == 302 and response.headers["Location"] == "/specs/demo/edit?tab=jobs"
    db.session.refresh(job)
    assert job.status == JobStatus.CANCELLED
    # Finished: no cancel button any more.
    assert cancel_form not in table_row(html(client.get("/")), f"spec-row-{spec.id}")


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "javascript:alert(1)"])
def test_cancel_never_redirects_off_site(client, auth, target):
    _, job = make_spec("demo")
    response = client.post(f"/jobs/{job.id}/cancel", data={"next": target})
    assert response.headers["Location"] == f"/jobs/{job.id}"


def poll(client, job, offset, state=None):
    url = f"/jobs/{job.id}/log?offset={offset}"
    return client.get(url + (f"&state={state}" if state else ""))


def poller_url(body, wait=False):
    """The poller's next URL; without its long wait unless asked (these tests answer at once)."""
    match = re.search(r'<div id="log-poller"[^>]*hx-get="([^"]+)"', body)
    if not match:
        return None
    url = match.group(1).replace("&amp;", "&")
    return url if wait else url.replace("&wait=1", "")


def log_lines(body):
    """The plain text of each rendered log line of a page or poll answer."""
    return [re.sub(r"<[^>]+>", "", m) for m in re.findall(r'<span class="lt">(.*?)</span></div>', body)]


def test_log_poll_with_nothing_new_is_an_empty_204(client, auth):
    _, job = make_spec("demo")
    first = html(poll(client, job, 0))
    url = poller_url(first)
    idle = client.get(url)
    assert idle.status_code == 204
    assert idle.data == b""


def test_log_poll_appends_new_text_escaped_and_without_ansi(client, auth):
    _, job = make_spec("demo")
    set_job(job, status=JobStatus.RUNNING, progress="STEP 1/3")
    url = poller_url(html(poll(client, job, 0)))
    append_log_chunk(job, "STEP 1/3: FROM debian\n\x1b[31mred\x1b[0m <script>alert(1)</script>\n")
    db.session.commit()

    response = client.get(url)
    assert response.status_code == 200
    body = html(response)
    text = body[: body.index('<div id="log-poller"')]
    assert log_lines(text) == ["STEP 1/3: FROM debian", "red &lt;script&gt;alert(1)&lt;/script&gt;"]
    assert '<span class="ansi-fg1">red</span>' in text
    assert "\x1b" not in body and "<script>" not in body
    # The next poll asks from the next chunk, out of band, and the status comes along.
    assert 'hx-swap-oob="true"' in element(body, "log-poller")
    assert "offset=1&" in poller_url(body) and "line=2&" in poller_url(body)
    assert '<section id="job-status"' in body and "STEP 1/3" in body
    assert client.get(poller_url(body)).status_code == 204


def test_log_poll_reports_a_status_change_without_new_text(client, auth):
    _, job = make_spec("demo")
    url = poller_url(html(poll(client, job, 0)))
    set_job(job, status=JobStatus.RUNNING, progress="STEP 2/3")
    response = client.get(url)
    assert response.status_code == 200
    body = html(response)
    assert body.startswith('<div id="log-poller"')  # no lines for the log
    assert "badge-running" in body and "STEP 2/3" in body
    assert 'hx-trigger="load, log:again"' in element(body, "log-poller")


def test_log_polling_stops_once_the_finished_log_is_delivered(client, auth):
    _, job = make_spec("demo")
    append_log_chunk(job, "building\n")
    set_job(job, status=JobStatus.SUCCEEDED, image="registry.test/demo:r1-x")
    with_text = html(poll(client, job, 0))
    assert log_lines(with_text) == ["building"]
    assert 'hx-trigger="load, log:again"' in element(with_text, "log-poller")  # once more, to be sure it is all

    final = html(client.get(poller_url(with_text)))
    poller = element(final, "log-poller")
    assert "hx-trigger" not in poller and "hx-get" not in poller
    assert "end of log" in final and "badge-succeeded" in final


def test_long_log_is_caught_up_in_batches(client, auth):
    _, job = make_spec("demo")
    for seq in range(600):
        db.session.add(LogChunk(job_id=job.id, seq=seq, text=f"line {seq}\n"))
    db.session.commit()
    first = html(poll(client, job, 0))
    assert log_lines(first) == [f"line {n}" for n in range(500)]
    assert 'hx-trigger="load, log:again"' in element(first, "log-poller")
    second = html(client.get(poller_url(first)))
    assert log_lines(second) == [f"line {n}" for n in range(500, 600)]
    assert 'id="L501"' in second  # numbered on from the first batch


# --- delete ---------------------------------------------------------------------------------


def test_delete_removes_the_spec_with_its_jobs_and_logs(client, auth):
    spec, job = make_spec("demo")
    append_log_chunk(job, "log text\n")
    db.session.commit()
    page = html(client.get("/"))
    assert '<dialog id="delete-dialog"' in page

    response = client.post("/specs/demo/delete", follow_redirects=True)
    body = html(response)
    assert "Deleted demo" in body and "No image specs yet" in body
    assert db.session.scalar(select(func.count(BuildJob.id))) == 0
    assert db.session.scalar(select(func.count(LogChunk.id))) == 0


# --- CSRF -----------------------------------------------------------------------------------


def test_state_changing_requests_need_the_csrf_token(app, client, admin):
    # The test app turns CSRF off; Flask-WTF reads the setting on every request.
    app.config["WTF_CSRF_ENABLED"] = True
    credentials = {"username": "admin", "password": "correct-horse-battery"}

    def token(url):
        return re.search(r'name="csrf-token" content="([^"]+)"', html(client.get(url))).group(1)

    login_token = token("/login")
    assert client.post("/login", data=credentials).status_code == 400
    assert client.post("/login", data={**credentials, "csrf_token": login_token}).status_code == 302

    page_token = token("/specs/new")
    assert client.post("/specs/new", data=SPEC_FORM).status_code == 400
    assert client.post("/specs/validate", data=SPEC_FORM).status_code == 400
    assert db.session.scalar(select(func.count(ImageSpec.id))) == 0
    # htmx sends the token as a header; forms send the hidden field.
    validated = client.post("/specs/validate", data=SPEC_FORM, headers={"X-CSRFToken": page_token})
    assert validated.status_code == 200 and "FROM debian:bookworm" in html(validated)
    saved = client.post("/specs/new", data={**SPEC_FORM, "csrf_token": page_token})
    assert saved.status_code == 302
    assert db.session.scalar(select(func.count(ImageSpec.id))) == 1
    assert client.post("/specs/demo/delete").status_code == 400
    assert client.post("/credentials/new", data={"name": "x"}).status_code == 400
    assert client.post("/logout").status_code == 400


# --- relative times --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "age, words",
    [
        (timedelta(seconds=3), "just now"),
        (timedelta(seconds=42), "42 seconds ago"),
        (timedelta(minutes=1, seconds=5), "1 minute ago"),
        (timedelta(minutes=3), "3 minutes ago"),
        (timedelta(hours=5), "5 hours ago"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=45), "1 month ago"),
        (timedelta(days=800), "2 years ago"),
        (timedelta(minutes=-2), "in 2 minutes"),
    ],
)
def test_humanize_age(age, words):
    now = datetime(2026, 6, 1, 12, 0, 0)
    assert humanize_age(now - age, now) == words


def test_relative_time_is_a_time_element_with_the_exact_utc_time_on_hover():
    now = datetime(2026, 6, 1, 12, 0, 0)
    markup = relative_time(datetime(2026, 6, 1, 11, 57, 0), now)
    assert markup == (
        '<time datetime="2026-06-01T11:57:00Z" title="2026-06-01 11:57:00 UTC">3 minutes ago</time>'
    )
