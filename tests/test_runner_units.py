"""The build runner and its log writer, with fakes only at the Podman and registry boundary.

The real Podman, registry and worker run in tests/integration; here the job row, the log
chunks and the state machine are real (the app's database), and Podman answers what each
case needs.
"""
import base64
import io
import json
import re
import tarfile
import threading

import pytest

from app.builds import maintenance
from app.builds import runner as runner_module
from app.builds.logwriter import LogWriter
from app.builds.podman import END, BuildHandle, PodmanFailure, RegistryAuth
from app.builds.registry import Manifest
from app.builds.runner import run_build
from app.credentials.service import create_credential
from app.extensions import db
from app.models import BuildJob, JobPackage, JobStatus, LogChunk
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


class FakeContainer:
    """A throwaway container's output and exit code, as Podman's would come."""

    def __init__(self, chunks, exit_code=0, endless=False):
        self.stream = FakeStream(chunks, endless=endless)
        self.code = exit_code
        self.overflowed = False
        self.removed = False

    def get(self, timeout):
        return END if self.removed else self.stream.get(timeout)

    def exit_code(self):
        return self.code

    def remove(self):
        self.removed = True
        self.stream.close()


# What the verify step's listing prints for the built image, by section.
MANIFEST = {
    "os": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"',
    "user": "app",
    "dpkg": "ii \tjq\t1.6-2.1\tamd64\t\nii \tmawk\t1.3.4.20200120-3.1\tamd64\tawk",
    "pip": json.dumps([{"name": "six", "version": "1.16.0"}, {"name": "pip", "version": "23.0.1"}]),
    "pip-check": "No broken requirements found.",
}


def listing(command, sections):
    """The listing's output with the nonce its command carries."""
    marker = re.search(r"@@imagebuilder-[0-9a-f]+", command).group(0)
    text = "".join(f"{marker} {name}\n{body}\n" for name, body in sections.items())
    return text + f"{marker} end\n"


class FakePodman:
    """Answers like Podman; what a case changes is set on the instance."""

    def __init__(self):
        self.calls = []
        self.pull_events = [{"stream": "Trying to pull ...\n"}]
        self.build_events = [{"stream": "STEP 1/2: FROM x\n"}, {"stream": f"echo {PASSWORD}\n"},
                             {"stream": "STEP 2/2: RUN pip install\n"}, {"stream": "abc123\n"}]
        self.build_endless = False
        self.build_attempts = []  # the events of successive builds, when they differ
        self.build_params = []
        self.contexts = []
        self.conda_tool = "/usr/bin/micromamba"
        self.images = {"localhost/debian:bookworm": {"Id": "base1", "Config": {"User": "app"}}}
        self.stopped = False
        self.manifest = dict(MANIFEST)
        self.test_output = ["testing ...\n", "ok\n"]
        self.test_exit = 0
        self.test_endless = False
        self.containers = []

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

    def version(self):
        return "4.3.1"

    def build(self, context, tag, auth, extra_params=None):
        self.calls.append(("build", tag, auth))
        self.build_params.append(extra_params)
        self.contexts.append(context)
        self.images[tag] = {"Id": "built1"}
        events = self.build_attempts.pop(0) if self.build_attempts else self.build_events
        return FakeStream(events, endless=self.build_endless)

    def run_in_image(self, image, command, stderr, max_bytes):
        if "@@imagebuilder-" in command:
            self.calls.append(("manifest", image))
            container = FakeContainer([listing(command, self.manifest)])
        else:
            self.calls.append(("test", image, command))
            container = FakeContainer(self.test_output, self.test_exit, endless=self.test_endless)
        self.containers.append(container)
        return container

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
    retagged = []

    def __init__(self, host, username=None, password=None, tls_verify=True):
        self.auth = (username, password)

    def manifest(self, repository, tag):
        return self.manifests.get(f"{repository}:{tag}")

    def retag(self, repository, source_tag, tag, expect_digest=None):
        self.retagged.append((repository, source_tag, tag, expect_digest))
        self.manifests[f"{repository}:{tag}"] = self.manifests[f"{repository}:{source_tag}"]
        return self.manifests[f"{repository}:{tag}"]


@pytest.fixture
def fake(app, monkeypatch, queued_rq_jobs):
    app.config.update(REGISTRY="reg.example.com/team", REGISTRY_USERNAME="robot", REGISTRY_PASSWORD=PASSWORD,
                      REGISTRY_TLS_VERIFY=False, REGISTRY_PUSH_LATEST=True, BUILD_CA_BUNDLE=None,
                      LOG_FLUSH_SECONDS=0.1, BUILD_TIMEOUT=60)
    podman = FakePodman()
    FakeRegistry.manifests, FakeRegistry.retagged = {}, []
    monkeypatch.setattr(runner_module, "Podman", podman)
    monkeypatch.setattr(runner_module, "RegistryClient", FakeRegistry)
    monkeypatch.setattr(maintenance, "RegistryClient", FakeRegistry)
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
    FakeRegistry.manifests = {f"team/demo:{job.tag}": manifest}


def run_cancelled_during(app, fake, job_id, step):
    """Run the job, asking for its cancel once the fake Podman has been called for `step`
    ("build", "test"): that step is running then."""

    def ask_cancel():
        with app.app_context():
            while not any(call[0] == step for call in fake.calls):
                threading.Event().wait(0.02)
            db.session.execute(db.update(BuildJob).where(BuildJob.id == job_id).values(cancel_requested=True))
            db.session.commit()

    asker = threading.Thread(target=ask_cancel)
    asker.start()
    run_build(job_id)
    asker.join()


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
    assert "==> [1/6] Pulling base image" in log and "==> Done" in log
    assert log.index("==> [4/6] Verifying") < log.index("==> [5/6] Pushing") < log.index("==> [6/6] Confirming")
    assert PASSWORD not in log and "echo *****" in log
    pushes = [c for c in fake.calls if c[0] == "push"]
    assert [p[1] for p in pushes] == [job.image]  # latest is re-tagged in the registry, not pushed
    assert FakeRegistry.retagged == [("team/demo", job.tag, "latest", job.digest)]
    assert job.spec.active_revision == job.revision
    assert f"==> r{job.revision} is the active revision; reg.example.com/team/demo:latest is {job.digest}." in log
    assert pushes[0][2].password == PASSWORD and pushes[0][3] is False  # auth header, TLS off as configured
    assert ("pull" not in [c[0] for c in fake.calls])  # localhost/ images are never pulled


def test_a_pip_index_with_credentials_reaches_the_build_as_a_secret_only(fake, app):
    token = "idx-s3cret-9876"
    app.config.update(PIP_INDEX_URL=f"https://robot:{token}@mirror.example/simple", PIP_EXTRA_INDEX_URLS=[])
    fake.build_events = fake.build_events + [{"stream": f"401 for https://robot:{token}@mirror.example\n"}]
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    params = fake.build_params[-1]
    assert json.loads(params["secrets"]) == ["id=imagebuilder-pip-index,src=imagebuilder-pip-index.conf"]
    with tarfile.open(fileobj=io.BytesIO(fake.contexts[-1])) as tar:
        assert token in tar.extractfile("imagebuilder-pip-index.conf").read().decode()
        assert token not in tar.extractfile("Containerfile").read().decode()
    job = finished(job_id)
    built = job.spec_snapshot["containerfile_built"]
    assert "IMAGEBUILDER_PIP_INDEX_URL='https://robot:***@mirror.example/simple'" in built
    assert token not in json.dumps(job.spec_snapshot) and token not in (job.error or "")
    assert token not in log_of(job_id) and "401 for https://robot:*****@mirror.example" in log_of(job_id)


def test_a_pip_index_without_credentials_sends_no_secret(fake, app):
    app.config.update(PIP_INDEX_URL="https://mirror.example/simple", PIP_EXTRA_INDEX_URLS=[])
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    assert "secrets" not in (fake.build_params[-1] or {})
    with tarfile.open(fileobj=io.BytesIO(fake.contexts[-1])) as tar:
        assert tar.getnames() == ["Containerfile"]
    assert "PIP_INDEX_URL=https://mirror.example/simple" in finished(job_id).spec_snapshot["containerfile_built"]


# -- the verify step -----------------------------------------------------------------------


def packages_of(job_id):
    rows = db.session.scalars(db.select(JobPackage).where(JobPackage.job_id == job_id)).all()
    return {(r.manager, r.name): (r.version, r.requested) for r in rows}


def test_the_verify_step_stores_the_manifest_and_marks_the_requested_lines(fake):
    job_id = new_job(apt="jq\nawk", pip="six==1.16.0")
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    job = finished(job_id)
    assert (job.packages_count, job.os_name, job.image_user) == (4, "Debian GNU/Linux 12 (bookworm)", "app")
    assert packages_of(job_id) == {
        ("apt", "jq"): ("1.6-2.1", True),
        ("apt", "mawk"): ("1.3.4.20200120-3.1", True),  # provides awk
        ("pip", "six"): ("1.16.0", True),
        ("pip", "pip"): ("23.0.1", False),
    }
    log = log_of(job_id)
    assert "packages: 2 apt, 2 pip, 0 conda" in log and "All 3 requested package(s) are installed" in log
    assert [c for c in fake.calls if c[0] == "manifest"] == [("manifest", job.image)]
    assert all(c.removed for c in fake.containers)


def test_a_requested_version_not_installed_fails_before_the_push(fake):
    job_id = new_job(apt="jq=1.7.1-3", pip="six==1.17.0")
    pushed(job_id)
    run_build(job_id)
    job = finished(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == (
        "The image does not have what the spec asks for: apt line 1 'jq=1.7.1-3': installed jq 1.6-2.1 is not "
        "that version; pip line 1 'six==1.17.0': installed six 1.16.0 does not satisfy it. Nothing was pushed.")
    assert "push" not in [c[0] for c in fake.calls]
    assert "==> [5/6] Pushing" not in log_of(job_id)
    assert job.packages_count == 4  # the manifest is kept: it shows what was found


def test_pip_check_complaints_are_a_warning_not_a_failure(fake):
    fake.manifest["pip-check"] = "six 1.16.0 has requirement nothing-else>=2, but you have nothing-else 1.0."
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    assert ("Warning: pip check reports broken requirements (the build goes on):\n"
            "  six 1.16.0 has requirement nothing-else>=2") in log_of(job_id)


def test_the_test_command_runs_in_the_image_and_its_output_is_logged(fake):
    job_id = new_job(test_command="python3 -c 'import six'")
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    job = finished(job_id)
    assert ("test", job.image, "python3 -c 'import six'") in fake.calls
    assert "testing ...\nok\nThe test command passed (exit 0)." in log_of(job_id)


def test_a_failing_test_command_fails_the_job_and_nothing_is_pushed(fake):
    fake.test_output, fake.test_exit = ["AssertionError: no six\n"], 3
    job_id = new_job(test_command="exit 3")
    pushed(job_id)
    run_build(job_id)
    job = finished(job_id)
    assert job.status == JobStatus.FAILED and job.error == "The test command failed (exit 3); nothing was pushed."
    assert "AssertionError: no six" in log_of(job_id)
    assert "push" not in [c[0] for c in fake.calls] and all(c.removed for c in fake.containers)


def test_a_test_command_past_test_timeout_is_stopped(fake, app):
    app.config["TEST_TIMEOUT"] = 0.3
    fake.test_endless = True
    job_id = new_job(test_command="sleep 1000")
    pushed(job_id)
    run_build(job_id)
    job = finished(job_id)
    assert job.error == "The test command ran past TEST_TIMEOUT (0.3 s) and was stopped; nothing was pushed."
    assert fake.containers[-1].removed and "push" not in [c[0] for c in fake.calls]


def test_a_cancel_stops_the_test_command(fake, app):
    fake.test_endless = True
    job_id = new_job(test_command="sleep 1000")
    run_cancelled_during(app, fake, job_id, "test")
    assert finished(job_id).status == JobStatus.CANCELLED
    assert fake.containers[-1].removed and "push" not in [c[0] for c in fake.calls]


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


def test_another_specs_image_is_pulled_with_the_push_credentials(fake):
    run_build(new_job(base_image="reg.example.com/team/parent:latest"))
    pull = next(c for c in fake.calls if c[0] == "pull")
    assert pull[2].username == "robot" and pull[2].host == "reg.example.com"


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
    run_cancelled_during(app, fake, job_id, "build")
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
