"""The whole story in a real browser with a real worker: add a spec, watch it go
queued -> running -> succeeded in the list without reloading, read its log as it grows,
and find the pushed image's reference in the list.

The worker (``python worker.py``), rootless Podman and the registry are the real ones
(tests/integration/support.py); the worker starts only after the spec is saved, so the
queued state is there to be seen.
"""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.models import BuildJob, ImageSpec
from integration.support import BASE

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# A base image whose pip takes its time and says so, so the running state and the
# growing log are there to be watched; it prints in colour and draws a progress bar with
# carriage returns, as pip and apt do on a terminal.
SLOW_PIP = r"""#!/bin/sh
for n in 1 2 3 4 5 6 7 8; do echo "slow pip, second $n"; sleep 1; done
printf '\033[1;32mcoloured: all green\033[0m\n'
for p in 0 25 50 75 100; do printf '\rfetching wheels %3d%%' $p; done
printf '\n'
exec /usr/bin/pip "$@"
"""


@pytest.fixture
def live_server_config(build_stack):
    """The live server shares its database, queue and build settings with the worker."""
    return dict(build_stack.settings)


def test_watch_a_real_build_live(signed_in, live_server, build_stack, screenshot):
    build_stack.app = live_server.app
    slow_base = build_stack.build_helper_image(
        "slow", f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n",
        {"pip": SLOW_PIP.encode()},
    )
    page = signed_in
    page.get_by_role("link", name="+ Add").first.click()
    page.fill("#name", "live-demo")
    page.fill("#base_image", slow_base)
    page.fill("#apt", "jq")
    page.fill("#pip", "six")
    expect(page.locator("#containerfile-preview")).to_contain_text(f"FROM {slow_base}")
    page.get_by_role("button", name="Save and build").click()
    page.wait_for_url(re.compile(r"/$"))
    row = page.locator("#spec-table tbody tr", has_text="live-demo")
    expect(row.locator(".badge")).to_have_text("queued")
    screenshot("live-01-queued")

    build_stack.start_worker()
    expect(row.locator(".badge")).to_have_text("running", timeout=30_000)
    expect(row).to_contain_text("STEP", timeout=30_000)
    screenshot("live-02-running")

    with live_server.app_context():
        spec = db.session.scalar(select(ImageSpec).where(ImageSpec.name == "live-demo"))
        job_id = db.session.scalar(select(BuildJob.id).where(BuildJob.spec_id == spec.id))
    # The job in a second tab, while the list tab stays as it is (never reloaded).
    job_page = page.context.new_page()
    job_page.goto(row.locator("a.badge-link").get_attribute("href"))
    job_page.wait_for_url(re.compile(rf"/jobs/{job_id}$"))
    log = job_page.locator("#log")
    expect(log).to_contain_text("slow pip, second 2", timeout=60_000)
    seen_early = log.inner_text()
    expect(log).to_contain_text("slow pip, second 6", timeout=30_000)
    assert len(log.inner_text()) > len(seen_early)  # the log grew in place
    job_page.screenshot(path=str(screenshot("live-02-running").with_name("live-03-log-growing.png")), full_page=True)

    expect(job_page.locator("#job-status .badge")).to_have_text("succeeded", timeout=180_000)
    expect(log).to_contain_text("==> Done")
    # Colour as a styled span, no escape codes; the progress bar is one line at its end.
    expect(log.locator(".ansi-fg2.ansi-bold")).to_have_text("coloured: all green")
    assert "\x1b" not in log.text_content() and "[1;32m" not in log.text_content()
    expect(log.locator(".line", has_text="fetching wheels")).to_have_count(1)
    expect(log.locator(".line", has_text="fetching wheels")).to_have_text(re.compile(r"fetching wheels 100%$"))
    # Each step folds, with its duration; the download is the stored log as plain text.
    expect(log.locator("details.log-step", has_text=re.compile(r"\[1/\d+\] Pulling"))).to_have_count(1)
    expect(log.locator("details.log-step .step-time").first).to_have_text(re.compile(r"\d s$"))
    download = job_page.request.get(f"/jobs/{job_id}/log.txt")
    assert "coloured: all green\n" in download.text() and "\x1b" not in download.text()
    expect(job_page.locator("#log-poller")).to_contain_text("end of log")
    job_page.screenshot(path=str(screenshot("live-02-running").with_name("live-04-job-succeeded.png")), full_page=True)
    job_page.close()

    job = build_stack.wait_for(job_id)
    assert job.image.startswith(f"{build_stack.registry}/live-demo:r1-")
    expect(row.locator(".badge")).to_have_text("succeeded", timeout=10_000)
    expect(row.locator(".image")).to_contain_text(job.image)
    screenshot("live-05-list-image")
