"""Log latency: from Podman printing a line to the log endpoint returning it, through the
real pipeline (build stream -> worker -> batched chunks -> database -> HTTP). A base image's
pip prints a timestamped line every 100 ms; a poller asks the log endpoint every 100 ms
(the pipeline's own latency) and another every second as the job page does.
Targets: p95 at most 1.5 s; an idle poll (nothing new) answers in under 300 bytes.

    .venv/bin/python bench/log_latency.py
"""
import re
import threading
import time

import requests
from _stack import BASE, login, percentile, save_spec, serve, started_stack

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
        fast, page = Poller(base_url, job_id, 0.1), Poller(base_url, job_id, 1.0)
        fast.start()
        page.start()
        job = stack.wait_for(job_id)
        fast.join(30)
        page.join(30)
        if job.status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"job {job.status}: {job.error}")
        for name, poller in (("100 ms poller (pipeline)", fast), ("1 s poller (job page)", page)):
            lat = poller.latencies
            print(f"log latency, {name}: {len(lat)} lines, p50 {percentile(lat, 50):.2f}s, "
                  f"p95 {percentile(lat, 95):.2f}s, max {max(lat):.2f}s (target p95 <= 1.5s)")
        idle = fast.idle_sizes + page.idle_sizes
        print(f"idle poll: {len(idle)} answered 204, at most {max(idle)} bytes on the wire (target < 300)")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
