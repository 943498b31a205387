"""The build runner and its log writer, with fakes only at the Podman and registry boundary.

The real Podman, registry and worker run in tests/integration; here the job row, the log
chunks and the state machine are real (the app's database), and Podman answers what each
case needs.
"""
import base64
import json
import threading

import pytest

from app.builds import runner as runner_module
from app.builds.logwriter import LogWriter
from app.builds.podman import END, BuildHandle, PodmanFailure, RegistryAuth
from app.builds.registry import Manifest
from app.builds.runner import run_build
from app.credentials.service import create_credential
from app.extensions import db
from app.models import BuildJob, JobStatus, LogChunk
from app.specs.service import create_spec, rebuild_spec

PASSWORD = "s3cret-registry-pass"
PULL_PASSWORD = "pull-secret-pass-42"


# -- the log writer ----------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def writer(max_bytes=1_000_000, secrets=(), clock=None):
    stored = []

    def store(text, progress, truncated):
        stored.append((text, progress, truncated))

    return LogWriter(store, max_bytes=max_bytes, flush_seconds=0.5, secrets=secrets, clock=clock or Clock()), stored


def test_lines_are_batched_until_time_passes():
    clock = Clock()
    log, stored = writer(clock=clock)
    for n in range(1000):
        log.line(f"line {n}")
    assert stored == []
    clock.now = 0.6
    log.line("one more")
    assert len(stored) == 1 and stored[0][0].count("\n") == 1001


def test_a_full_buffer_is_written_without_waiting():
    log, stored = writer()
    log.write("x" * 70_000 + "\n")
    assert len(stored) == 1


def test_only_whole_lines_are_written_while_the_build_runs():
    clock = Clock()
    log, stored = writer(clock=clock)
    log.write("complete\npartial")
    clock.now = 1
    log.tick()
    assert stored[0][0] == "complete\n"
    log.close()
    assert stored[-1][0] == "partial"


def test_secrets_are_redacted_even_split_across_writes():
    auth = RegistryAuth("reg.example.com", "robot", PASSWORD)
    log, stored = writer(secrets=auth.secret_forms())
    log.write(f"echo {PASSWORD[:6]}")
    log.write(f"{PASSWORD[6:]} and {auth.auth_header()}\n")
    log.line("basic " + base64.b64encode(f"robot:{PASSWORD}".encode()).decode())
    log.close()
    text = "".join(t for t, _p, _tr in stored)
    assert PASSWORD not in text and auth.auth_header() not in text
    assert text.count("*****") == 3


def test_step_lines_set_progress():
    log, stored = writer()
    log.line("STEP 1/4: FROM debian")
    log.line("STEP 3/4: RUN apt-get install")
    log.close()
    assert stored[-1][1] == "STEP 3/4"


def test_the_cap_keeps_head_notice_and_tail():
    log, stored = writer(max_bytes=4000)
    for n in range(1000):
        log.line(f"output line {n:04d}")
    log.line("==> Done")
    log.close()
    text = "".join(t for t, _p, _tr in stored)
    assert len(text.encode()) <= 4000 + 200
    assert text.startswith("output line 0000\n")
    assert "[log over 4000 bytes: further output is held back" in text
    assert "[log truncated: " in text and "bytes omitted; the last" in text
    assert text.rstrip().endswith("output line 0999\n==> Done")
    assert stored[-1][2] is True and log.truncated


def test_a_failed_store_loses_nothing():
    clock = Clock()
    calls = []

    def store(text, progress, truncated):
        calls.append(text)
        if len(calls) == 1:
            raise RuntimeError("database is locked")

    log = LogWriter(store, max_bytes=10_000, flush_seconds=0.5, clock=clock)
    log.line("first")
    clock.now = 1
    log.tick()
    log.line("second")
    log.close()
    assert calls[-1] == "first\nsecond\n"


# -- the runner, with a fake Podman -------------------------------------------------------


class FakeStream:
    def __init__(self, events, endless=False):
        self.events = list(events)
        self.endless = endless
        self.closed = False
        self.last_layer = None
        self.broken = False

    def get(self, timeout):
        if self.events:
            return self.events.pop(0)
        if self.endless and not self.closed:
            threading.Event().wait(min(timeout, 0.05))
            return None
        return END

    def close(self):
        self.closed = True


class FakePodman:
    """Answers like Podman; what a case changes is set on the instance."""

    def __init__(self):
        self.calls = []
        self.pull_events = [{"stream": "Trying to pull ...\n"}]
        self.build_events = [{"stream": "STEP 1/2: FROM x\n"}, {"stream": f"echo {PASSWORD}\n"},
                             {"stream": "STEP 2/2: RUN pip install\n"}, {"stream": "abc123\n"}]
        self.build_endless = False
        self.conda_tool = "/usr/bin/micromamba"
        self.images = {"localhost/debian:bookworm": {"Id": "base1", "Config": {"User": "app"}}}
        self.stopped = False

    def __call__(self, url):
        return self

    def ping(self):
        self.calls.append("ping")

    def inspect_image(self, ref):
        return self.images.get(ref)

    def pull(self, ref, auth, tls_verify):
        self.calls.append(("pull", ref, auth, tls_verify))
        self.images[ref] = {"Id": "pulled1", "Config": {}}
        return FakeStream(self.pull_events)

    def find_conda_tool(self, image):
        self.calls.append(("conda-check", image))
        return self.conda_tool

    def start_handle(self, base_id):
        return BuildHandle(base_id, 0.0)

    def build(self, context, tag, auth):
        self.calls.append(("build", tag, auth))
        self.images[tag] = {"Id": "built1"}
        return FakeStream(self.build_events, endless=self.build_endless)

    def stop_build(self, handle, stream):
        self.stopped = True
        stream.close()

    def tag_image(self, ref, repo, tag):
        self.calls.append(("tag", ref, f"{repo}:{tag}"))

    def push(self, ref, auth, tls_verify):
        self.calls.append(("push", ref, auth, tls_verify))
        return FakeStream([{"stream": "Writing manifest to image destination\n"}])

    def close(self):
        pass


class FakeRegistry:
    manifests = {}

    def __init__(self, host, username=None, password=None, tls_verify=True):
        self.auth = (username, password)

    def manifest(self, repository, tag):
        return self.manifests.get(f"{repository}:{tag}")


@pytest.fixture
def fake(app, monkeypatch, queued_rq_jobs):
    app.config.update(REGISTRY="reg.example.com/team", REGISTRY_USERNAME="robot", REGISTRY_PASSWORD=PASSWORD,
                      REGISTRY_TLS_VERIFY=False, REGISTRY_PUSH_LATEST=True, BUILD_CA_BUNDLE=None,
                      LOG_FLUSH_SECONDS=0.1, BUILD_TIMEOUT=60)
    podman = FakePodman()
    FakeRegistry.manifests = {}
    monkeypatch.setattr(runner_module, "Podman", podman)
    monkeypatch.setattr(runner_module, "RegistryClient", FakeRegistry)
    monkeypatch.setattr(runner_module, "HEARTBEAT_SECONDS", 0.05)
    return podman


def new_job(**data):
    outcome = create_spec({"name": "demo", "base_image": "localhost/debian:bookworm", "apt": "", "pip": "six",
                           "conda": "", **data})
    assert outcome.ok, outcome.result.errors
    return outcome.job.id


def pushed(job_id, digest="sha256:" + "a" * 64):
    job = db.session.get(BuildJob, job_id)
    manifest = Manifest(digest=digest, media_type="application/vnd.oci.image.manifest.v1+json", size_bytes=1234)
    FakeRegistry.manifests = {f"team/demo:{job.tag}": manifest, "team/demo:latest": manifest}


def finished(job_id):
    db.session.remove()
    return db.session.get(BuildJob, job_id)


def log_of(job_id):
    return "".join(db.session.scalars(db.select(LogChunk.text).where(LogChunk.job_id == job_id).order_by(LogChunk.seq)))


def test_a_build_runs_pushes_confirms_and_records(fake):
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    job = finished(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.error is None
    assert job.image == f"reg.example.com/team/demo:{job.tag}"
    assert job.digest == "sha256:" + "a" * 64 and job.size_bytes == 1234
    assert job.started_at and job.finished_at and job.worker and job.progress is None
    # The base image's user is restored; the snapshot keeps the Containerfile built.
    assert job.spec_snapshot["containerfile_built"].rstrip().endswith("USER app")
    assert "containerfile" in job.spec_snapshot
    log = log_of(job_id)
    assert "==> [1/5] Pulling base image" in log and "==> Done" in log
    assert PASSWORD not in log and "echo *****" in log
    pushes = [c for c in fake.calls if c[0] == "push"]
    assert [p[1] for p in pushes] == [job.image, "reg.example.com/team/demo:latest"]
    assert pushes[0][2].password == PASSWORD and pushes[0][3] is False  # auth header, TLS off as configured
    assert ("pull" not in [c[0] for c in fake.calls])  # localhost/ images are never pulled


def test_a_job_runs_once(fake):
    job_id = new_job()
    pushed(job_id)
    run_build(job_id)
    calls = len(fake.calls)
    assert run_build(job_id) is None
    assert len(fake.calls) == calls


def test_a_queued_job_whose_cancel_was_asked_never_starts(fake):
    job_id = new_job()
    db.session.get(BuildJob, job_id).cancel_requested = True
    db.session.commit()
    assert run_build(job_id) is None
    assert finished(job_id).status == JobStatus.CANCELLED
    assert fake.calls == []


def test_a_job_waits_while_another_job_of_its_spec_runs(fake, monkeypatch):
    later = []
    monkeypatch.setattr(runner_module, "requeue_later", lambda job_id, seconds: later.append(job_id))
    first = new_job()
    db.session.get(BuildJob, first).status = JobStatus.RUNNING
    db.session.commit()
    run_build(new_job(name="demo-b"))  # another spec's job runs meanwhile
    third = rebuild_spec(db.session.get(BuildJob, first).spec).id
    assert run_build(third) is None
    assert finished(third).status == JobStatus.QUEUED and later == [third]
    assert fake.calls.count("ping") == 1  # only the other spec's job reached Podman


def test_a_tag_missing_from_the_registry_fails_the_job(fake):
    job_id = new_job()
    run_build(job_id)
    job = finished(job_id)
    assert job.status == JobStatus.FAILED
    assert "does not list team/demo" in job.error and job.digest is None


def test_conda_without_a_tool_fails_before_building(fake):
    fake.conda_tool = None
    job_id = new_job(conda="numpy")
    run_build(job_id)
    job = finished(job_id)
    assert job.error.startswith("Conda packages need micromamba, mamba or conda in the base image, and "
                                "localhost/debian:bookworm has none.")
    assert "build" not in [c[0] for c in fake.calls]


@pytest.mark.parametrize("with_secret, expected", [
    (False, "needs a registry credential"),
    (True, "Credential 'pull' was refused by registry reg.example.com"),
])
def test_a_refused_pull_says_what_to_do(fake, with_secret, expected):
    fake.pull_events = [{"error": "reading manifest 1 in reg.example.com/private/base: unauthorized: "
                                  "authentication required"}]
    data = {"base_image": "reg.example.com/private/base:1"}
    if with_secret:
        _cred, errors = create_credential({"name": "pull", "registry": "reg.example.com", "username": "u",
                                           "password": PULL_PASSWORD})
        assert not errors
        data["pull_secret"] = "pull"
    job_id = new_job(**data)
    run_build(job_id)
    job = finished(job_id)
    assert job.status == JobStatus.FAILED and expected in job.error
    pull = next(c for c in fake.calls if c[0] == "pull")
    assert (pull[2] is not None) == with_secret
    assert pull[3] is False  # the operator's registry, marked REGISTRY_TLS_VERIFY=false
    assert PULL_PASSWORD not in log_of(job_id) + job.error


@pytest.mark.parametrize("base, pulled", [
    ("debian:bookworm", "docker.io/library/debian:bookworm"),
    ("mambaorg/micromamba:1.5", "docker.io/mambaorg/micromamba:1.5"),
    ("reg.example.com:5000/team/base:1", "reg.example.com:5000/team/base:1"),
])
def test_short_names_are_pulled_from_docker_hub_explicitly(fake, base, pulled):
    job_id = new_job(base_image=base)
    pushed(job_id)
    run_build(job_id)
    assert next(c for c in fake.calls if c[0] == "pull")[1] == pulled
    assert finished(job_id).status == JobStatus.SUCCEEDED


def test_a_credential_for_another_registry_is_not_sent(fake):
    create_credential({"name": "other", "registry": "other.example.com", "username": "u", "password": PULL_PASSWORD})
    job_id = new_job(base_image="reg.example.com/private/base:1", pull_secret="other")
    run_build(job_id)
    job = finished(job_id)
    assert "is for registry other.example.com" in job.error
    assert not [c for c in fake.calls if c[0] == "pull"]


@pytest.mark.parametrize("chunks", [
    ["E: Unable to locate package nope\n"],
    ["Building dependency tree...\nE", ": Unable to locate ", "package nope\n"],  # apt's separate writes
])
def test_a_failed_build_keeps_the_package_managers_error(fake, chunks):
    fake.build_events = [*({"stream": chunk} for chunk in chunks),
                         {"error": "building at STEP \"RUN apt-get\": exit status 100"}]
    job_id = new_job()
    run_build(job_id)
    job = finished(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("The build failed: E: Unable to locate package nope (Podman: building at STEP")
    assert "E: Unable to locate package nope" in log_of(job_id)
    assert "push" not in [c[0] for c in fake.calls]


def test_a_timeout_stops_the_build(fake, app):
    app.config["BUILD_TIMEOUT"] = 0
    fake.build_endless = True
    job_id = new_job()
    run_build(job_id)
    job = finished(job_id)
    assert job.status == JobStatus.FAILED and job.error == "The build timed out after 0 s (BUILD_TIMEOUT)."


def test_a_cancel_request_stops_a_running_build(fake, app):
    fake.build_endless = True
    job_id = new_job()

    def ask_cancel():
        with app.app_context():
            while not any(call[0] == "build" for call in fake.calls):  # the build is running
                threading.Event().wait(0.02)
            db.session.execute(db.update(BuildJob).where(BuildJob.id == job_id).values(cancel_requested=True))
            db.session.commit()

    asker = threading.Thread(target=ask_cancel)
    asker.start()
    run_build(job_id)
    asker.join()
    job = finished(job_id)
    assert job.status == JobStatus.CANCELLED and fake.stopped
    assert "Stopping the build in Podman" in log_of(job_id)


def test_a_crash_still_writes_a_final_state(fake, monkeypatch):
    def broken(*args, **kwargs):
        raise PodmanFailure("Podman failed creating a container: no space left on device")

    monkeypatch.setattr(fake, "build", broken)
    job_id = new_job()
    run_build(job_id)
    assert finished(job_id).error == "Podman failed creating a container: no space left on device"

    def crash(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(fake, "build", crash)
    job_id = new_job(name="demo2")
    with pytest.raises(KeyError):
        run_build(job_id)
    job = finished(job_id)
    assert job.status == JobStatus.FAILED and job.error.startswith("Internal error: KeyError")


def test_the_final_state_is_written_when_the_log_cannot_be(fake, monkeypatch):
    def no_log(job, text):
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(runner_module, "append_log_chunk", no_log)
    job_id = new_job()
    pushed(job_id)
    run_build(job_id)
    assert finished(job_id).status == JobStatus.SUCCEEDED


def test_registry_auth_headers_carry_the_credential_only_there():
    auth = RegistryAuth("reg.example.com", "robot", PASSWORD)
    assert json.loads(base64.urlsafe_b64decode(auth.auth_header())) == {"username": "robot", "password": PASSWORD}
    assert json.loads(base64.urlsafe_b64decode(auth.config_header())) == {
        "reg.example.com": {"username": "robot", "password": PASSWORD}}


def test_podman_not_answering_fails_the_job_clearly(fake, app, monkeypatch, tmp_path):
    from app.builds.podman import Podman

    app.config["PODMAN_URL"] = f"unix://{tmp_path}/no-podman.sock"
    monkeypatch.setattr(runner_module, "Podman", Podman)  # the real client, nothing listening
    job_id = new_job()
    run_build(job_id)
    job = finished(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith(f"The Podman service at unix://{tmp_path}/no-podman.sock does not answer")


# -- the registry client, against a small registry that wants bearer tokens ----------------


@pytest.fixture
def token_registry():
    """An HTTP registry whose manifests need a token from its realm (basic auth there)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    basic = "Basic " + base64.b64encode(b"robot:" + PASSWORD.encode()).decode()
    manifest = json.dumps({"mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"size": 100},
                           "layers": [{"size": 1000}, {"size": 234}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            host = self.headers["Host"]
            if self.path.startswith("/token"):
                ok = self.headers.get("Authorization") == basic and "scope=repository" in self.path
                return self._send(200 if ok else 401, json.dumps({"token": "T0K"}).encode() if ok else b"")
            if self.headers.get("Authorization") != "Bearer T0K":
                return self._send(401, b"", {"WWW-Authenticate": f'Bearer realm="http://{host}/token",'
                                             f'service="reg",scope="repository:team/demo:pull"'})
            if self.path == "/v2/team/demo/manifests/r1-abc":
                return self._send(200, manifest, {"Docker-Content-Digest": "sha256:" + "b" * 64,
                                                  "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            return self._send(404, b"{}")

        def _send(self, code, body, headers=None):
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()


def test_registry_client_gets_a_bearer_token_and_reads_the_digest(token_registry):
    from app.builds.registry import RegistryClient, RegistryError

    client = RegistryClient(token_registry, "robot", PASSWORD, tls_verify=False)
    manifest = client.manifest("team/demo", "r1-abc")
    assert manifest.digest == "sha256:" + "b" * 64 and manifest.size_bytes == 1334
    assert client.manifest("team/demo", "r2-missing") is None
    with pytest.raises(RegistryError, match="token service refused"):
        RegistryClient(token_registry, "robot", "wrong", tls_verify=False).manifest("team/demo", "r1-abc")
