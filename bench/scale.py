"""At scale: 1,000 specs and 20,000 jobs. Server time and SQL queries per request for the
spec list, its htmx row refresh, a busy spec's Jobs tab and the API spec list (Flask test
client); then 50 viewers long-polling the logs of 20 running builds, whose log chunks a writer
per build appends every 200 ms (publishing the Redis wake-up as the workers do), against
gunicorn sized as scripts/run sizes it, while an admin uses the spec list and the new-spec form.
Every 5xx and every writer error is counted.
Targets: list and row refresh median under 50 ms; the spec list and the form p95 under 100 ms
while the viewers wait; no 5xx, no failed request, no writer error ("database is locked").

    .venv/bin/python bench/scale.py                       # SQLite in a temporary folder
    .venv/bin/python bench/scale.py --database-url postgresql://postgres@127.0.0.1:5432/imagebuilder_bench

A PostgreSQL database is dropped and created again, so its name must contain "bench".
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, event, func, insert, select, text
from sqlalchemy.engine import make_url

from _stack import REPO, percentile
from app import create_app
from app.auth.service import create_or_update_user, issue_token
from app.builds import livelog
from app.builds.logs import append_log_chunk
from app.builds.queue import redis_connection
from app.crypto import encrypt_secret
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, LogChunk, RegistryCredential, User, utcnow
from config import Config

ADMIN, PASSWORD = "admin", "bench-password-0"
LIST_TARGET_MS, PAGE_P95_TARGET_MS = 50, 100
POLL_PROCESSES = 5
OFFSET_RE = re.compile(r"offset=(\d+)")
STATE_RE = re.compile(r"state=([0-9a-f]+)")
LINE_RE = re.compile(r"[?&;]line=(\d+)")
STEP_RE = re.compile(r"[?&;]step=(\d+)")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- the database ---------------------------------------------------------------------------

def fresh_database(url: str | None, workdir: Path) -> str:
    """A SQLAlchemy URL of an empty database (PostgreSQL: dropped and created again)."""
    if not url:
        return f"sqlite:///{workdir / 'bench.db'}"
    os.environ["DATABASE_URL"] = url
    import config

    url = config._database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        if "bench" not in parsed.database:
            sys.exit(f"refusing to drop {parsed.database!r}: a bench database's name contains 'bench'")
        admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
        admin.dispose()
    return url


def server_env(url: str, workdir: Path, credentials_key: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "INSTANCE_PATH": str(workdir),
        "SECRET_KEY": "bench-secret",
        "CREDENTIALS_KEY": credentials_key,
        "RQ_QUEUE": "bench-scale",
    }


def upgrade(env: dict) -> None:
    """The schema as the release step makes it (Alembic in a process of its own)."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        sys.exit(f"flask db upgrade failed:\n{done.stderr[-3000:]}")


def populate(specs: int, jobs: int, running: int, busy_jobs: int, seed: int = 7) -> dict:
    """Bulk rows: specs (one in five with a pull secret), jobs with a realistic mix of
    statuses, ``running`` builds with some log already, and a first spec with ``busy_jobs``."""
    rnd = random.Random(seed)
    now = utcnow()
    creds = [
        {"name": f"registry-{i}", "registry_host": f"registry{i}.example.com", "username": "robot",
         "password_encrypted": encrypt_secret("not-a-real-password"), "created_at": now, "updated_at": now}
        for i in range(10)
    ]
    db.session.execute(insert(RegistryCredential), creds)
    cred_ids = db.session.scalars(select(RegistryCredential.id)).all()
    db.session.execute(insert(ImageSpec), [
        {"name": f"spec-{i:04d}", "base_image": "debian:bookworm",
         "pull_secret_id": rnd.choice(cred_ids) if i % 5 == 0 else None,
         "apt": ["curl", "git", f"pkg{i}"], "pip": ["requests==2.32.3"], "conda": [],
         "created_at": now - timedelta(days=90), "updated_at": now - timedelta(minutes=rnd.randint(1, 100000))}
        for i in range(specs)
    ])
    spec_ids = db.session.scalars(select(ImageSpec.id).order_by(ImageSpec.name)).all()

    # How many jobs each spec has: the busy one, then the rest spread at random.
    per_spec = {spec_id: 1 for spec_id in spec_ids}
    per_spec[spec_ids[0]] = busy_jobs
    for _ in range(jobs - sum(per_spec.values())):
        per_spec[rnd.choice(spec_ids[1:])] += 1
    running_specs = set(rnd.sample(spec_ids[1:], running))
    queued_specs = set(rnd.sample([s for s in spec_ids[1:] if s not in running_specs], running // 2))

    containerfile = "FROM debian:bookworm\nRUN apt-get update && apt-get install -y curl git\n" * 3
    rows = []
    for spec_id, count in per_spec.items():
        for revision in range(1, count + 1):
            latest = revision == count
            if latest and spec_id in running_specs:
                status = JobStatus.RUNNING
            elif latest and spec_id in queued_specs:
                status = JobStatus.QUEUED
            else:
                status = rnd.choices(JobStatus.FINISHED, weights=(80, 14, 6))[0]
            created = now - timedelta(minutes=(count - revision) * 30 + 5)
            ok = status == JobStatus.SUCCEEDED
            rows.append({
                "spec_id": spec_id, "revision": revision, "input_hash": f"{rnd.getrandbits(64):016x}",
                "status": status,
                "spec_snapshot": {"name": f"spec-{spec_id}", "base_image": "debian:bookworm", "pull_secret": None,
                                  "apt": ["curl", "git"], "pip": [], "conda": [], "containerfile": containerfile},
                "image": f"127.0.0.1:5000/imagebuilder/spec-{spec_id}:r{revision}" if ok else None,
                "digest": f"sha256:{rnd.getrandbits(256):064x}" if ok else None,
                "size_bytes": rnd.randint(80, 900) * 1024 * 1024 if ok else None,
                "progress": "step 3/5" if status == JobStatus.RUNNING else None,
                "error": "E: Unable to locate package nosuch" if status == JobStatus.FAILED else None,
                "log_bytes": 0, "log_truncated": False, "cancel_requested": False,
                "worker": "bench-worker" if status != JobStatus.QUEUED else None,
                "heartbeat_at": now if status == JobStatus.RUNNING else None,
                "created_at": created,
                "started_at": created + timedelta(seconds=2) if status != JobStatus.QUEUED else None,
                "finished_at": created + timedelta(minutes=3) if status in JobStatus.FINISHED else None,
                "updated_at": created + timedelta(minutes=3),
            })
    for start in range(0, len(rows), 2000):
        db.session.execute(insert(BuildJob), rows[start:start + 2000])

    # Some log for every finished job of the busy spec and for each running build.
    logged = db.session.execute(
        select(BuildJob.id).where((BuildJob.spec_id == spec_ids[0]) | (BuildJob.status == JobStatus.RUNNING))
    ).scalars().all()
    chunks = [{"job_id": job_id, "seq": seq, "text": f"step {seq}: " + "x" * 120 + "\n", "created_at": now}
              for job_id in logged for seq in range(20)]
    for start in range(0, len(chunks), 5000):
        db.session.execute(insert(LogChunk), chunks[start:start + 5000])
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        # Planner statistics, as autovacuum keeps them in a database that has been up a while.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))

    running_ids = db.session.scalars(select(BuildJob.id).where(BuildJob.status == JobStatus.RUNNING)).all()
    busy = db.session.get(ImageSpec, spec_ids[0])
    return {"busy_spec": busy.name, "row_spec": f"spec-{specs // 2:04d}", "running": running_ids}


# -- server time and queries ----------------------------------------------------------------

@contextmanager
def counted_queries(engine):
    statements = []

    def count(*args):
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def measure(client, engine, url: str, iterations: int, **kwargs) -> dict:
    """No app context is active here: each request gets its own, with a fresh session and
    ``g`` (the signed-in user is loaded again), as in a server."""
    client.get(url, **kwargs)  # warm caches and templates
    with counted_queries(engine) as statements:
        response = client.get(url, **kwargs)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code}")
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        response = client.get(url, **kwargs)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return {"median": statistics.median(times), "p95": percentile(times, 95),
            "queries": len(statements), "bytes": len(response.data)}


def page_figures(app, facts: dict, iterations: int) -> list[tuple]:
    client = app.test_client()
    client.post("/login", data={"username": ADMIN, "password": PASSWORD})
    with app.app_context():
        token = issue_token(db.session.scalar(select(User).where(User.username == ADMIN)))
        engine = db.engine
    busy = facts["busy_spec"]
    cases = [
        ("spec list /", "/", {}, LIST_TARGET_MS),
        (f"row refresh /specs/{facts['row_spec']}/row", f"/specs/{facts['row_spec']}/row",
         {"headers": {"HX-Request": "true"}}, LIST_TARGET_MS),
        (f"Jobs tab, {busy} page 1", f"/specs/{busy}/edit?tab=jobs", {}, None),
        (f"Jobs tab, {busy} page 40", f"/specs/{busy}/edit?tab=jobs&page=40", {}, None),
        ("API GET /api/v1/specs", "/api/v1/specs", {"headers": {"Authorization": f"Bearer {token}"}}, None),
        ("job log poll (running, offset 0)", f"/jobs/{facts['running'][0]}/log?offset=0", {}, None),
    ]
    return [(label, measure(client, engine, url, iterations, **kw), target) for label, url, kw, target in cases]


# -- log polling against gunicorn -------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(env: dict, port: int, workers: int, threads: int) -> subprocess.Popen:
    log = open(Path(env["INSTANCE_PATH"]) / "gunicorn.log", "a")
    server = subprocess.Popen(
        [str(REPO / ".venv/bin/gunicorn"), "app:create_app()", "-w", str(workers), "-k", "gthread",
         "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 200:
                return server
        except requests.RequestException:
            time.sleep(0.2)
    server.kill()
    sys.exit(f"gunicorn did not answer; see {log.name}")


def browser_session() -> requests.Session:
    """A session that, like a browser, sends a GET again once when the server closed the
    kept-alive connection it was reused on (gunicorn closes idle ones after 2 s); each such
    retry is counted (``retried``)."""
    session = requests.Session()
    retry = Retry(total=1, connect=1, read=1, status=0, other=0, allowed_methods=["GET"],
                  raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def retried(response: requests.Response) -> bool:
    retries = getattr(response.raw, "retries", None)
    return bool(retries and retries.history)


def signed_in_session(base_url: str) -> requests.Session:
    session = browser_session()
    form = session.get(f"{base_url}/login")
    token = CSRF_RE.search(form.text).group(1)
    response = session.post(f"{base_url}/login", data={"username": ADMIN, "password": PASSWORD, "csrf_token": token},
                            allow_redirects=False)
    if response.status_code != 302:
        raise RuntimeError(f"login failed: {response.status_code}")
    return session


class LogWriter(threading.Thread):
    """One build's log writer: a chunk every ``interval`` seconds, committed on its own."""

    def __init__(self, app, job_id: int, interval: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.app, self.job_id, self.interval, self.stop = app, job_id, interval, stop
        self.chunks, self.errors = 0, []

    def run(self):
        with self.app.app_context():
            redis = redis_connection()
            while not self.stop.wait(self.interval):
                try:
                    job = db.session.get(BuildJob, self.job_id)
                    append_log_chunk(job, f"{time.time():.3f} line {self.chunks} " + "y" * 80 + "\n")
                    job.heartbeat_at = utcnow()
                    db.session.commit()
                    livelog.announce_chunk(redis, self.job_id)
                    self.chunks += 1
                except Exception as exc:  # counted and reported: a locked database is a failure
                    db.session.rollback()
                    self.errors.append(repr(exc))


class Poller(threading.Thread):
    """One open job page, asking as static/js/log.js does: a long poll (``wait=1``), again at
    once after an answer, after Retry-After seconds after a 204 (0 when a wait timed out, more
    when the server had no waiting slot free and the viewer polls plainly)."""

    def __init__(self, base_url: str, cookies, job_id: int, interval: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.base_url, self.job_id, self.interval, self.stop = base_url, job_id, interval, stop
        self.session = browser_session()
        self.session.cookies.update(cookies)
        self.latencies, self.server_errors, self.failures, self.retried = [], [], [], []
        self.answers: dict[str, int] = {}

    def run(self):
        cursor, state = {"offset": 0, "line": 0, "step": 0}, ""
        self.stop.wait(random.uniform(0, self.interval))  # pages are opened at different moments
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                response = self.session.get(f"{self.base_url}/jobs/{self.job_id}/log",
                                            params={**cursor, "state": state, "wait": 1},
                                            headers={"HX-Request": "true"}, timeout=40)
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
                continue
            if retried(response):
                self.retried.append(response.status_code)
            retry = response.headers.get("Retry-After")
            kind = f"{response.status_code}" + (" (plain poll)" if retry not in (None, "0") else "")
            self.answers[kind] = self.answers.get(kind, 0) + 1
            if response.status_code >= 500:
                self.server_errors.append(f"{response.status_code} {response.text[:200]}")
            if response.status_code == 200:
                self.latencies.append((time.perf_counter() - start) * 1000)  # waited, then answered
                body = response.text
                for name, pattern in (("offset", OFFSET_RE), ("line", LINE_RE), ("step", STEP_RE)):
                    found = pattern.findall(body)
                    cursor[name] = int(found[-1]) if found else cursor[name]
                states = STATE_RE.findall(body)
                state = states[-1] if states else state
            elif response.status_code == 204:
                self.stop.wait(float(retry or 1))


class PageTimer(threading.Thread):
    """An admin using the other pages while the viewers wait: the spec list and the new-spec
    form, one after the other, every ``interval`` seconds; client-side time of each."""

    PAGES = {"spec list /": "/", "form /specs/new": "/specs/new"}

    def __init__(self, session: requests.Session, base_url: str, interval: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.session, self.base_url, self.interval, self.stop = session, base_url, interval, stop
        self.times = {label: [] for label in self.PAGES}
        self.server_errors, self.failures, self.retried = [], [], []

    def run(self):
        self.stop.wait(2)  # the viewers are waiting by then
        while not self.stop.is_set():
            for label, path in self.PAGES.items():
                start = time.perf_counter()
                try:
                    response = self.session.get(self.base_url + path, timeout=30)
                except requests.RequestException as exc:
                    self.failures.append(f"{path}: {exc!r}")
                    continue
                self.times[label].append((time.perf_counter() - start) * 1000)
                if retried(response):
                    self.retried.append(path)
                if response.status_code != 200:
                    self.server_errors.append(f"{path}: {response.status_code}")
            self.stop.wait(self.interval)


def write_logs(env: dict, running: list[int], seconds: float, every: float, go, results) -> None:
    """The builds' log writers, in a process of their own as workers are (no shared GIL)."""
    os.environ.update(env)
    app = create_app({"SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"], "SECRET_KEY": env["SECRET_KEY"],
                      "RQ_QUEUE": env["RQ_QUEUE"],  # the wake-up channels carry it
                      "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": len(running)}})
    quiet_request_log(Path(env["INSTANCE_PATH"]) / "writers.log")
    with app.app_context():
        db.session.get(BuildJob, running[0])
        db.session.rollback()
    results.put("ready")
    go.wait()
    stop = threading.Event()
    writers = [LogWriter(app, job_id, every, stop) for job_id in running]
    for writer in writers:
        writer.start()
    time.sleep(seconds)
    stop.set()
    for writer in writers:
        writer.join()
    results.put({"chunks": sum(w.chunks for w in writers), "errors": [e for w in writers for e in w.errors]})


def poll_from_process(base_url: str, cookies: dict, job_ids: list[int], every: float, seconds: float, go,
                      results) -> None:
    """Some of the clients, in a process of their own: 50 browsers share no GIL either."""
    stop = threading.Event()
    pollers = [Poller(base_url, cookies, job_id, every, stop) for job_id in job_ids]
    warm_up(pollers)
    results.put("ready")
    go.wait()
    for poller in pollers:
        poller.start()
    time.sleep(seconds)
    stop.set()
    for poller in pollers:
        poller.join(timeout=35)
    answers = {}
    for poller in pollers:
        for kind, count in poller.answers.items():
            answers[kind] = answers.get(kind, 0) + count
    results.put({**{key: [item for p in pollers for item in getattr(p, key)]
                    for key in ("latencies", "server_errors", "failures", "retried")}, "answers": answers})


def warm_up(pollers, rounds: int = 5) -> None:
    """Every gunicorn worker has compiled its templates and opened its connections, as a
    server that has been up for a while has."""
    for _ in range(rounds):
        threads = [threading.Thread(target=p.session.get, args=(f"{p.base_url}/jobs/{p.job_id}/log",))
                   for p in pollers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def server_durations(log_path: Path, path_part: str) -> list[float]:
    """The app's own duration_ms of each request whose path contains ``path_part``."""
    found = []
    for line in log_path.read_text().splitlines():
        if "logger=app.request" in line and path_part in line:
            match = re.search(r"duration_ms=([0-9.]+)", line)
            if match:
                found.append(float(match.group(1)))
    return found


def poll_figures(env: dict, running: list[int], clients: int, seconds: float, write_every: float,
                 poll_every: float, workers: int, threads: int) -> dict:
    port = free_port()
    server = start_gunicorn(env, port, workers, threads)
    base_url = f"http://127.0.0.1:{port}"
    spawn = multiprocessing.get_context("spawn")
    go, written, polled = spawn.Event(), spawn.Queue(), spawn.Queue()
    try:
        # Signed in once, before the clock starts: hashing 50 passwords at once is not polling.
        cookies = signed_in_session(base_url).cookies.get_dict()
        processes = [spawn.Process(target=write_logs, args=(env, running, seconds, write_every, go, written))]
        jobs = [running[i % len(running)] for i in range(clients)]
        for part in range(POLL_PROCESSES):
            processes.append(spawn.Process(target=poll_from_process, args=(
                base_url, cookies, jobs[part::POLL_PROCESSES], poll_every, seconds, go, polled)))
        for process in processes:
            process.start()
        ready = [written.get(timeout=120)] + [polled.get(timeout=120) for _ in range(POLL_PROCESSES)]
        if ready != ["ready"] * len(ready):
            raise RuntimeError(f"the writers and pollers did not start: {ready}")
        log_path = Path(env["INSTANCE_PATH"]) / "gunicorn.log"
        log_path.write_text("")  # gunicorn appends: only the timed requests are counted
        pages_done = threading.Event()
        pages = PageTimer(signed_in_session(base_url), base_url, 0.2, pages_done)
        go.set()
        pages.start()
        writes = written.get(timeout=seconds + 60)
        pages_done.set()
        pages.join()
        polls = [polled.get(timeout=seconds + 60) for _ in range(POLL_PROCESSES)]
        for process in processes:
            process.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = [ms for p in polls for ms in p["latencies"]]
    on_server = server_durations(log_path, "/log ")
    answers = {}
    for p in polls:
        for kind, count in p["answers"].items():
            answers[kind] = answers.get(kind, 0) + count
    on_server_pages = {label: server_durations(log_path, f"path={path} ") for label, path in PageTimer.PAGES.items()}
    return {
        "answers": answers,
        "pages": {label: (percentile(t, 50), percentile(t, 95), len(t)) for label, t in pages.times.items() if t},
        "pages_on_server": {label: (percentile(t, 50), percentile(t, 95)) for label, t in on_server_pages.items() if t},
        "page_errors": pages.server_errors,
        "requests": sum(answers.values()), "rps": sum(answers.values()) / seconds,
        "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
        "server_p50": percentile(on_server, 50), "server_p95": percentile(on_server, 95),
        "server_p99": percentile(on_server, 99),
        "server_errors": [e for p in polls for e in p["server_errors"]],
        "failures": [e for p in polls for e in p["failures"]] + pages.failures,
        "retried": len([e for p in polls for e in p["retried"]]) + len(pages.retried),
        "writer_errors": writes["errors"],
        "chunks_written": writes["chunks"],
    }


# -- report ------------------------------------------------------------------------------------

def quiet_request_log(path: Path) -> None:
    """The app's key=value lines still get written (they cost what they cost), to a file."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(path, "a"))


def print_comparison(poll: dict, unbounded: dict, slots: int, rate: float, threads: int) -> None:
    """The two live-log runs side by side: answer turns and rate as configured, and unbounded."""
    mine, theirs = f"{slots} turn(s), {rate:g}/s", f"{threads} turns, no rate"
    print(f"\n  {'same load, same run':<38} {mine:>22} {theirs:>22}  ratio")
    rows = [("requests/s", poll["rps"], unbounded["rps"]),
            ("a wait answered, p50 ms", poll["p50"], unbounded["p50"]),
            ("a wait answered, p95 ms", poll["p95"], unbounded["p95"])]
    for label in poll["pages"]:
        if label in unbounded["pages"]:
            rows.append((f"{label} p50 ms", poll["pages"][label][0], unbounded["pages"][label][0]))
            rows.append((f"{label} p95 ms", poll["pages"][label][1], unbounded["pages"][label][1]))
    for label, mine, theirs in rows:
        print(f"  {label:<38} {mine:>22.1f} {theirs:>22.1f}  {mine / theirs if theirs else float('nan'):.2f}")
    errors = sum(len(unbounded[key]) for key in ("server_errors", "page_errors", "failures", "writer_errors"))
    print(f"  {'5xx, failures, writer errors':<38} {'(below)':>22} {errors:>22}")


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"< {target} ms: {'met' if value < target else 'MISSED'}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite in a temporary folder)")
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--running", type=int, default=20)
    parser.add_argument("--busy-jobs", type=int, default=2000, help="jobs of the one spec whose Jobs tab is timed")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=40,
                        help="how long the viewers poll: about 140 page samples for a p95 (20 s gave 65)")
    parser.add_argument("--write-every", type=float, default=0.2)
    parser.add_argument("--poll-every", type=float, default=1.0, help="the pages are opened within this many seconds")
    parser.add_argument("--workers", type=int, default=2, help="as scripts/run and the Procfile")
    parser.add_argument("--threads", type=int, default=32, help="as scripts/run and the Procfile")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the second live-log run with unbounded answer turns")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="imagebuilder-scale-"))
    url = fresh_database(args.database_url, workdir)
    env = server_env(url, workdir, Fernet.generate_key().decode())
    os.environ.update({k: env[k] for k in ("INSTANCE_PATH", "CREDENTIALS_KEY")})
    print(f"database: {make_url(url).render_as_string(hide_password=True)}", flush=True)
    upgrade(env)
    # Server time, so no answer rate: 50 log polls in a row would wait for their turns.
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": env["SECRET_KEY"],
                      "CREDENTIALS_KEY": env["CREDENTIALS_KEY"], "WTF_CSRF_ENABLED": False, "LOG_ANSWER_RATE": 0})
    quiet_request_log(workdir / "bench-app.log")
    started = time.perf_counter()
    with app.app_context():
        create_or_update_user(ADMIN, PASSWORD)
        facts = populate(args.specs, args.jobs, args.running, args.busy_jobs)
        counts = {m.__tablename__: db.session.scalar(select(func.count()).select_from(m))
                  for m in (ImageSpec, BuildJob, LogChunk)}
    print(f"populated {counts} in {time.perf_counter() - started:.1f} s", flush=True)

    pages = page_figures(app, facts, args.iterations)
    print(f"polling: {args.clients} clients on {len(facts['running'])} running builds for {args.seconds:.0f} s ...",
          flush=True)
    poll = poll_figures(env, facts["running"], args.clients, args.seconds, args.write_every,
                        args.poll_every, args.workers, args.threads)
    unbounded = None
    if not args.no_compare:
        # The same load with as many answer turns as threads and no answer rate: every woken
        # request looks and renders at once, as before LOG_ANSWER_SLOTS and LOG_ANSWER_RATE.
        print("the same again, unbounded: LOG_ANSWER_SLOTS = threads, LOG_ANSWER_RATE 0 ...", flush=True)
        unbounded = poll_figures({**env, "LOG_ANSWER_SLOTS": str(args.threads), "LOG_ANSWER_RATE": "0"},
                                 facts["running"], args.clients,
                                 args.seconds, args.write_every, args.poll_every, args.workers, args.threads)

    backend = make_url(url).get_backend_name()
    print(f"\nServer time, Flask test client, {args.iterations} requests each ({backend}; "
          f"{counts['image_specs']} specs, {counts['build_jobs']} jobs)")
    print(f"{'request':<44} {'median ms':>9} {'p95 ms':>8} {'queries':>7} {'KB':>6}  target")
    for label, m, target in pages:
        print(f"{label:<44} {m['median']:>9.1f} {m['p95']:>8.1f} {m['queries']:>7} {m['bytes'] / 1024:>6.0f}  "
              f"{verdict(m['median'], target)}")
    print(f"\nLive logs, gunicorn {args.workers}x{args.threads} gthread; a process: LOG_WAIT_SLOTS "
          f"{Config.LOG_WAIT_SLOTS}, LOG_ANSWER_SLOTS {Config.LOG_ANSWER_SLOTS}, "
          f"LOG_ANSWER_RATE {Config.LOG_ANSWER_RATE:g}/s. "
          f"{args.clients} viewers long-polling (wait=1) the logs of {len(facts['running'])} builds, each writing "
          f"a chunk every {args.write_every * 1000:.0f} ms and publishing its wake-up")
    print(f"  requests {poll['requests']}  ({poll['rps']:.0f}/s)   chunks written {poll['chunks_written']}   "
          f"answers {dict(sorted(poll['answers'].items()))}   "
          f"sent again after the server closed a kept-alive connection {poll['retried']}")
    print(f"  a wait answered with new lines, ms: p50 {poll['p50']:.1f}  p95 {poll['p95']:.1f}  p99 {poll['p99']:.1f}")
    for label, (p50, p95, count) in poll["pages"].items():
        print(f"  {label:<18} while they wait: {count} requests, p50 {p50:.1f} ms, p95 {p95:.1f} ms   "
              f"p95 {verdict(p95, PAGE_P95_TARGET_MS)}")
        if label in poll["pages_on_server"]:
            print(f"  {'':<18} of which in the app (its duration_ms): p50 {poll['pages_on_server'][label][0]:.1f} ms, "
                  f"p95 {poll['pages_on_server'][label][1]:.1f} ms")
    if unbounded is not None:
        print_comparison(poll, unbounded, Config.LOG_ANSWER_SLOTS, Config.LOG_ANSWER_RATE, args.threads)
    problems = {"5xx responses": poll["server_errors"] + poll["page_errors"], "request failures": poll["failures"],
                "writer errors (a locked database would be one)": poll["writer_errors"]}
    for name, found in problems.items():
        print(f"  {name}: {len(found)}" + ("" if not found else f"  e.g. {found[0]}"))

    met = all(m["median"] < t for _, m, t in pages if t)
    met = met and all(p95 < PAGE_P95_TARGET_MS for _p50, p95, _n in poll["pages"].values())
    met = met and not any(problems.values())
    print(f"\nall targets {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
