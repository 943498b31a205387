"""Reading a build log in the browser: steps that fold, colours without escape codes, a
progress bar shown once, numbered lines to link to, a failed build opened at its error line,
and a download that is the API's log. The log is written to the live server's database
as the worker writes it (chunks, then the job's final state)."""
import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.auth.service import issue_token
from app.builds.logs import append_log_chunk
from app.extensions import db
from app.models import BuildJob, JobStatus, User, utcnow
from app.specs.service import create_spec
from conftest import ADMIN_USERNAME

PROGRESS = "".join(f"\rDownloading lists {n:3d}% [{'#' * (n // 5):<20}]" for n in range(0, 101, 5))
LOG = (
    "==> [1/5] Pulling base image localhost/debian:bookworm\n"
    "pulled\n"
    "==> [2/5] Pre-flight checks\n"
    "\x1b[32mok\x1b[0m: base image runs as root\n"
    "==> [3/5] Building 127.0.0.1:5000/imagebuilder/demo:r1-abc\n"
    "STEP 1/2: FROM localhost/debian:bookworm\n"
    "STEP 2/2: RUN apt-get install -y nosuchpkg\n"
    f"{PROGRESS}\n"
    "\x1b[1;31mE: Unable to locate package nosuchpkg\x1b[0m\n"
    "error building at STEP \"RUN apt-get install -y nosuchpkg\": exit status 100\n"
)
ERROR = "The build failed: E: Unable to locate package nosuchpkg (Podman: error building at STEP ...)"


def new_job(live_server) -> int:
    with live_server.app_context():
        outcome = create_spec({"name": "demo", "base_image": "localhost/debian:bookworm", "apt": "nosuchpkg",
                               "pip": "", "conda": ""})
        job = outcome.job
        job.status, job.started_at = JobStatus.RUNNING, utcnow()
        db.session.commit()
        return job.id


def write(live_server, job_id, text=None, **values):
    with live_server.app_context():
        job = db.session.get(BuildJob, job_id)
        if text:
            append_log_chunk(job, text)
        for key, value in values.items():
            setattr(job, key, value)
        db.session.commit()


def test_a_running_log_in_steps_then_the_failure_opened_at_its_error_line(signed_in, live_server, screenshot):
    page = signed_in
    job_id = new_job(live_server)
    write(live_server, job_id, LOG.split("==> [2/5]")[0])
    page.goto(f"/jobs/{job_id}")
    log = page.locator("#log")
    steps = log.locator("details.log-step")
    expect(steps).to_have_count(1)
    expect(steps.nth(0)).to_have_attribute("open", "")  # the current step is open

    # Lines arrive while it runs; the step that was running closes, the new one is open.
    write(live_server, job_id, "==> [2/5]" + LOG.split("==> [2/5]")[1])
    expect(steps).to_have_count(5)
    expect(steps.nth(4)).to_contain_text("STEP 2/2: RUN apt-get install -y nosuchpkg")
    expect(steps.nth(4)).to_have_attribute("open", "")
    expect(steps.nth(0)).not_to_have_attribute("open", "")
    expect(steps.nth(0).locator(".step-time")).to_have_text(re.compile(r"^\d+\.\d s$"))

    # A coloured line: a styled span, no escape codes.
    ok = log.locator(".line", has_text="base image runs as root").locator(".ansi-fg2")
    expect(ok).to_have_text("ok")
    assert ok.evaluate("e => getComputedStyle(e).color") != log.evaluate("e => getComputedStyle(e).color")
    assert "\x1b" not in (log.text_content() or "") and "[32m" not in (log.text_content() or "")
    # The progress bar that rewrote itself 21 times is one line showing its last state.
    progress = log.locator(".line", has_text="Downloading lists")
    expect(progress).to_have_count(1)
    expect(progress).to_contain_text("100% [####################]")
    assert " 50% " not in progress.text_content()

    # Steps fold and unfold.
    first = steps.nth(0)
    first.locator("summary").click()
    expect(first).to_have_attribute("open", "")
    expect(first.locator(".line", has_text="pulled")).to_be_visible()
    first.locator("summary").click()
    expect(first.locator(".line", has_text="pulled")).to_be_hidden()

    # It fails: the failed step opens at the package manager's error line, highlighted.
    steps.nth(4).locator("summary").click()  # the reader folded it
    expect(steps.nth(4)).not_to_have_attribute("open", "")
    write(live_server, job_id, "==> Failed: " + ERROR + "\n", status=JobStatus.FAILED, error=ERROR,
          finished_at=utcnow(), progress=None)
    error_line = log.locator(".line.log-error")
    expect(error_line).to_have_count(1)
    expect(error_line).to_contain_text("E: Unable to locate package nosuchpkg")
    expect(steps.nth(4)).to_have_attribute("open", "")
    expect(error_line).to_be_in_viewport()
    expect(page.locator("#log-poller")).to_contain_text("end of log")
    screenshot("log-01-failed-live")

    # The finished page: opened at the same line, and it asks for nothing more.
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.reload()
    expect(page.locator("#log .line.log-error")).to_contain_text("E: Unable to locate package nosuchpkg")
    expect(page.locator("#log .line.log-error")).to_be_in_viewport()
    expect(page.locator("#log details.log-step[open]")).to_have_count(1)
    page.wait_for_timeout(1500)  # a poller would have asked by now
    assert not [url for url in requests if re.search(r"/jobs/\d+/log", url)], requests
    screenshot("log-02-failed-page")


def test_a_line_link_opens_its_step_and_the_download_is_the_api_log(signed_in, live_server):
    page = signed_in
    job_id = new_job(live_server)
    write(live_server, job_id, LOG, status=JobStatus.SUCCEEDED, finished_at=utcnow())
    with live_server.app_context():
        token = issue_token(db.session.scalar(select(User).where(User.username == ADMIN_USERNAME)))
        db.session.commit()

    page.goto(f"/jobs/{job_id}#L4")
    line = page.locator("#L4")
    expect(line).to_contain_text("ok: base image runs as root")
    expect(line).to_be_visible()  # its step was opened for the link
    expect(line.locator("a.ln")).to_have_attribute("href", "#L4")

    download = page.request.get(page.locator("a", has_text="Download").get_attribute("href"))
    assert download.status == 200 and download.headers["content-type"].startswith("text/plain")
    api = page.request.get(f"/api/v1/jobs/{job_id}/log.txt", headers={"Authorization": f"Bearer {token}"})
    assert api.status == 200 and download.text() == api.text()
    assert "\x1b" not in api.text() and "E: Unable to locate package nosuchpkg\n" in api.text()
    raw = page.request.get(f"/api/v1/jobs/{job_id}/log.txt?ansi=1", headers={"Authorization": f"Bearer {token}"})
    assert raw.text() == LOG
