"""What the benchmarks share: the real services and a real worker, started the way the
integration tests start them (tests/integration/support.py), plus a few measurements."""
from __future__ import annotations

import statistics
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from integration.support import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    BASE,
    Stack,
    change_spec,
    save_spec,
    start_services,
)

__all__ = ["ADMIN_PASSWORD", "ADMIN_USERNAME", "BASE", "started_stack", "save_spec", "change_spec", "succeeded", "job_seconds", "unique_base", "percentile",
           "serve", "login", "statistics"]


def started_stack(**options) -> Stack:
    print("starting services and a worker ...", flush=True)
    stack = Stack(workdir=Path(tempfile.mkdtemp(prefix="imagebuilder-bench-")), services=start_services(), **options)
    return stack.start()


def unique_base(stack: Stack, name: str) -> str:
    """A base image of its own (a label), so what is built on it starts without cache."""
    return stack.build_helper_image(name, f"FROM {BASE}\nLABEL imagebuilder.bench={name}\n")


def succeeded(stack: Stack, job_id: int, timeout: float = 1200):
    """The finished job, which must have succeeded."""
    job = stack.wait_for(job_id, timeout=timeout)
    if job.status != "succeeded":
        raise RuntimeError(f"job {job_id} {job.status}: {job.error}")
    return job


def job_seconds(job) -> float:
    """From saving the spec (the job row is created and enqueued) to its final state."""
    return (job.finished_at - job.created_at).total_seconds()


def percentile(values, pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def serve(app):
    """The app on a real HTTP server (werkzeug, threaded) on a free port: its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def login(session, base_url: str) -> None:
    response = session.post(f"{base_url}/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    response.raise_for_status()
