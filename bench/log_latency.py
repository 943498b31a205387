"""Log latency: from Podman printing a line to the line being on the screen, through the
real pipeline (build stream -> worker -> chunks -> database -> Redis wake-up -> long poll ->
the job page's DOM). A base image's pip prints a timestamped line every 100 ms. The job page
is open in headless Chromium (Playwright), where a MutationObserver notes when each line
appears in the log; a plain poller also asks the log endpoint every 100 ms (no long wait).
Targets: the browser's p95 at most 0.3 s; an idle poll (nothing new) answers in under 300 bytes.

    .venv/bin/python bench/log_latency.py
"""
import re
import sys
import threading
import time

import requests
from _stack import ADMIN_PASSWORD, ADMIN_USERNAME, BASE, login, percentile, save_spec, serve, started_stack
from playwright.sync_api import sync_playwright

from app.models import JobStatus

TICKS = 150
TICKING_PIP = f"""#!/bin/sh
n=0
while [ $n -lt {TICKS} ]; do n=$((n+1)); echo "tick $(date +%s.%N)"; sleep 0.1; done
exec /usr/bin/pip "$@"
"""
TICK_RE = re.compile(r"tick (\d+\.\d+)")
OFFSET_RE = re.compile(r"offset=(\d+)")
STATE_RE = re.compile(r"state=([0-9a-f]+)")
BROWSER_TARGET_P95 = 0.3
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Notes (text, time) for every log line added to the page after it loaded.
WATCH_LINES = """() => {
  window.seenLines = [];
  new MutationObserver((mutations) => {
    const now = (performance.timeOrigin + performance.now()) / 1000;
    for (const m of mutations) for (const node of m.addedNodes) {
      if (node.nodeType !== 1) continue;
      const lines = node.matches(".line") ? [node] : node.querySelectorAll(".line");
      for (const line of lines) window.seenLines.push([line.textContent, now]);
    }
  }).observe(document.getElementById("log"), {childList: true, subtree: true});
}"""


def watch_in_browser(base_url, job_id):
    """The job page in Chromium until the job ends: the latency of each tick line seen live,
    and how many requests the page made to the log endpoint."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(base_url=base_url)
        requests_made = []
        page.on("request", lambda r: requests_made.append(r.url) if f"/jobs/{job_id}/log" in r.url else None)
        page.goto("/login")
        page.fill("#username", ADMIN_USERNAME)
        page.fill("#password", ADMIN_PASSWORD)
        page.click("main button[type=submit]")  # not the header's language buttons
        page.wait_for_url("**/")
        page.goto(f"/jobs/{job_id}")
        page.evaluate(WATCH_LINES)
        page.locator("#log-poller").filter(has_text="end of log").wait_for(timeout=600_000)
        seen = page.evaluate("window.seenLines")
        browser.close()
    latencies = [at - float(match.group(1)) for text, at in seen if (match := TICK_RE.search(text))]
    return latencies, len(requests_made)


def wire_size(response) -> int:
    head = f"HTTP/1.1 {response.status_code} {response.reason}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in response.headers.items()) + "\r\n"
    return len(head.encode()) + len(response.content)


class Poller(threading.Thread):
    def __init__(self, base_url, job_id, interval):
        super().__init__(daemon=True)
        self.base_url, self.job_id, self.interval = base_url, job_id, interval
        self.latencies, self.idle_sizes = [], []
        self.done = threading.Event()

    def run(self):
        session = requests.Session()
        login(session, self.base_url)
        offset, state = 0, ""
        while not self.done.is_set():
            response = session.get(f"{self.base_url}/jobs/{self.job_id}/log", params={"offset": offset, "state": state})
            seen = time.time()
            if response.status_code == 204:
                self.idle_sizes.append(wire_size(response))
            else:
                body = response.text
                self.latencies += [seen - float(ts) for ts in TICK_RE.findall(body)]
                offsets = OFFSET_RE.findall(body)
                states = STATE_RE.findall(body)
                offset = int(offsets[-1]) if offsets else offset
                state = states[-1] if states else state
                if 'hx-trigger' not in body:
                    return  # the job ended: the poller came back without a trigger
            time.sleep(self.interval)


def main():
    stack = started_stack()
    try:
        base = stack.build_helper_image(
            "ticking", f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n",
            {"pip": TICKING_PIP.encode()},
        )
        base_url = serve(stack.app)
        job_id = save_spec(stack, name="ticking", base_image=base, pip="six")
        fast = Poller(base_url, job_id, 0.1)
        fast.start()
        browser_latencies, browser_requests = watch_in_browser(base_url, job_id)
        job = stack.wait_for(job_id)
        fast.join(30)
        if job.status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"job {job.status}: {job.error}")
        lat = fast.latencies
        print(f"log latency, 100 ms poller (pipeline): {len(lat)} lines, p50 {percentile(lat, 50):.2f} s, "
              f"p95 {percentile(lat, 95):.2f} s, max {max(lat):.2f} s")
        lat = browser_latencies
        met = bool(lat) and percentile(lat, 95) <= BROWSER_TARGET_P95
        print(f"log latency, browser: {len(lat)} lines, p50 {percentile(lat, 50):.2f} s, "
              f"p95 {percentile(lat, 95):.2f} s, max {max(lat):.2f} s "
              f"(target p95 <= {BROWSER_TARGET_P95} s: {'met' if met else 'MISSED'}); "
              f"the page asked the log endpoint {browser_requests} times")
        idle = fast.idle_sizes
        print(f"idle poll: {len(idle)} answered 204, at most {max(idle)} bytes on the wire (target < 300)")
        return 0 if met and max(idle) < 300 else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
