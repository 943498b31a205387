"""An admin's session in a real browser: add a spec (with a mistake), edit it, read a job, delete it.

No worker runs here: the test moves the job and writes its log in the database itself,
the way the worker would, to watch the page follow along.
"""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.builds.logs import append_log_chunk
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, utcnow

pytestmark = pytest.mark.browser


def update_job(live_server, revision, **values):
    with live_server.app_context():
        job = db.session.scalar(select(BuildJob).where(BuildJob.revision == revision))
        text = values.pop("log", None)
        if text:
            append_log_chunk(job, text)
        for key, value in values.items():
            setattr(job, key, value)
        db.session.commit()


def test_add_edit_read_the_job_and_delete(signed_in, live_server, screenshot):
    page = signed_in
    expect(page.get_by_text("No image specs yet")).to_be_visible()
    screenshot("01-empty-list")

    # Add: a bad APT line is reported next to the field, with its line number, while typing.
    page.get_by_role("link", name="+ Add").first.click()
    page.fill("#name", "demo")
    page.fill("#base_image", "debian:bookworm")
    page.fill("#apt", "curl\nfoo bar")
    apt_errors = page.locator("#errors-apt")
    expect(apt_errors).to_contain_text("Line 2")
    expect(apt_errors).to_contain_text("spaces are not allowed")
    expect(page.locator("#containerfile-preview")).to_contain_text("The preview appears once")
    page.check("#use_pull_secret")
    expect(page.locator("#pull-secret-choice")).to_contain_text("No registry credentials are stored yet")
    page.uncheck("#use_pull_secret")
    expect(page.locator("#pull-secret-choice")).to_be_hidden()
    screenshot("02-add-line-error")

    # Fixing the line clears the error and shows the Containerfile that will be built.
    page.fill("#apt", "curl\ngit")
    page.fill("#pip", "requests")
    expect(apt_errors).to_have_text("")
    preview = page.locator("#containerfile-preview")
    expect(preview).to_contain_text("FROM debian:bookworm")
    expect(preview).to_contain_text("git")
    expect(preview).to_contain_text("pip install --no-cache-dir")
    screenshot("03-add-preview")

    page.get_by_role("button", name="Save and build").click()
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator(".flash-success")).to_contain_text("Saved demo.")
    expect(page.locator(".flash-success")).to_contain_text("r1")
    row = page.locator("#spec-table tbody tr", has_text="demo")
    expect(row.locator(".badge")).to_have_text("queued")
    screenshot("04-list-queued")

    # The row follows its job without a reload, and stops polling once the job ends.
    update_job(live_server, 1, status=JobStatus.RUNNING, progress="STEP 2/3", started_at=utcnow())
    expect(row.locator(".badge")).to_have_text("running")
    expect(row).to_contain_text("STEP 2/3")
    image = "127.0.0.1:5000/imagebuilder/demo:r1-test"
    update_job(live_server, 1, status=JobStatus.SUCCEEDED, progress=None, image=image, finished_at=utcnow())
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(row.locator(".image")).to_contain_text("r1 waits to be activated")
    with live_server.app_context():  # what the runner's activation does right after a success
        db.session.scalar(select(ImageSpec).where(ImageSpec.name == "demo")).active_revision = 1
        db.session.commit()
    expect(row.locator(".image")).to_contain_text(image)
    expect(page.locator("#spec-table tbody tr[hx-trigger]")).to_have_count(0)
    row.get_by_role("button", name="Copy").click()
    expect(row.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == image
    screenshot("05-list-succeeded")
    page.set_viewport_size({"width": 420, "height": 860})
    expect(row.get_by_role("link", name="Edit")).to_be_visible()
    screenshot("05b-list-narrow")
    page.set_viewport_size({"width": 1280, "height": 860})

    # Edit: changing pip saves and starts the next job.
    row.get_by_role("link", name="Edit").click()
    expect(page.locator("#name")).to_have_attribute("readonly", "")
    page.fill("#pip", "requests\nnumpy")
    expect(page.locator("#containerfile-preview")).to_contain_text("numpy")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("r2")
    screenshot("06-edit-saved")

    page.get_by_role("link", name=re.compile("^Jobs")).click()
    jobs = page.locator("#jobs-table tbody tr")
    expect(jobs).to_have_count(2)
    expect(jobs.nth(0)).to_contain_text("r2")
    expect(jobs.nth(0).locator(".badge")).to_have_text("queued")
    expect(jobs.nth(1).locator(".badge")).to_have_text("succeeded")
    screenshot("07-jobs-tab")

    # The job page shows the log as it grows, escaped and without colour codes, then stops.
    jobs.nth(0).get_by_role("link", name="View log").click()
    expect(page.locator("h1")).to_contain_text("demo r2")
    expect(page.locator("#job-status .badge")).to_have_text("queued")
    update_job(live_server, 2, status=JobStatus.RUNNING, progress="STEP 1/3", started_at=utcnow(),
               log="STEP 1/3: FROM debian:bookworm\n\x1b[32mok\x1b[0m <script>window.pwned=1</script>\n")
    log = page.locator("#log")
    expect(log).to_contain_text("STEP 1/3: FROM debian:bookworm")
    expect(log).to_contain_text("ok <script>window.pwned=1</script>")
    expect(page.locator("#job-status")).to_contain_text("STEP 1/3")
    update_job(live_server, 2, log="".join(f"Collecting package-{n}\n" for n in range(80)))
    expect(log).to_contain_text("Collecting package-79")
    assert page.evaluate("window.pwned") is None
    assert "\x1b" not in log.inner_text()
    # The log follows new output to the bottom...
    assert log.evaluate("l => l.scrollHeight - l.scrollTop - l.clientHeight") < 30
    expect(page.get_by_role("button", name="Cancel build")).to_be_visible()
    screenshot("08-job-running")
    # ...until the reader scrolls up: then they keep their place while more output arrives.
    log.evaluate("l => { l.scrollTop = 0; l.dispatchEvent(new Event('scroll')); }")
    update_job(live_server, 2, log="Installing collected packages: numpy\n")
    expect(log).to_contain_text("Installing collected packages: numpy")
    assert log.evaluate("l => l.scrollTop") == 0
    update_job(live_server, 2, status=JobStatus.FAILED, progress=None, finished_at=utcnow(),
               error="pip install exited with 1", log="ERROR: No matching distribution found for numpy\n")
    expect(page.locator("#job-status .badge")).to_have_text("failed")
    expect(page.locator("#job-status .error-summary")).to_contain_text("pip install exited with 1")
    expect(page.locator("#log-poller")).to_contain_text("end of log")
    expect(page.get_by_role("button", name="Cancel build")).to_have_count(0)
    expect(page.locator("#log-poller")).not_to_have_attribute("hx-trigger", re.compile(".*"))
    expect(page.locator("main")).to_contain_text("requests")
    expect(page.locator("main")).to_contain_text("apt-get install -y --no-install-recommends")
    screenshot("09-job-failed")

    # Delete through the confirmation dialog.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Specs").click()
    page.get_by_role("button", name="Delete").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#spec-table")).to_contain_text("demo")
    page.get_by_role("button", name="Delete").click()
    expect(dialog).to_contain_text("Delete spec demo?")
    screenshot("10-delete-dialog")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash-success")).to_contain_text("Deleted demo")
    expect(page.get_by_text("No image specs yet")).to_be_visible()
    screenshot("11-deleted-empty-list")


def test_sign_in_page(page, screenshot):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.fill("#username", "admin")
    page.fill("#password", "wrong password")
    page.click("main button[type=submit]")
    expect(page.locator(".flash-error")).to_contain_text("Wrong username or password")
    screenshot("00-sign-in")
