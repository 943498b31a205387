"""Real builds, end to end: a spec saved through the catalogue's service is built by a real
``python worker.py`` with the rootless Podman service, pushed to the htpasswd registry and
checked there and by running the pushed image.
"""
import json
import time

import pytest
from rattler import MatchSpec
from sqlalchemy import select

from app.credentials.service import create_credential
from app.extensions import db
from app.models import BuildJob, JobStatus
from app.specs.validation import validate_spec
from integration.support import (BASE, PIP_STUB_INSTALL, assert_succeeded, change_spec, drain, pull_and_run,
                                 save_spec)

pytestmark = pytest.mark.integration

# 1. APT and pip packages: built, pushed, in the registry's tag list, installed in the image.
def test_apt_and_pip_packages_are_built_pushed_and_installed(stack):
    job_id = save_spec(stack, name="tools", base_image=BASE, apt="jq\n", pip="six\n")
    job = stack.wait_for(job_id)
    assert_succeeded(stack, job)

    assert job.image == f"{stack.registry}/tools:{job.tag}"
    assert job.digest.startswith("sha256:") and job.size_bytes > 10_000_000
    assert job.worker and job.started_at and job.finished_at and job.heartbeat_at

    registry = stack.registry_client()
    repository = f"it-{stack.sid}/tools"
    stack.wait_for_active("tools", job.revision)
    assert set(registry.tags(repository)) >= {job.tag, "latest"}
    assert registry.manifest(repository, job.tag).digest == job.digest
    assert registry.manifest(repository, "latest").digest == job.digest

    exit_code, output = pull_and_run(stack, job, 'jq --version && python3 -c "import six; print(six.__version__)"')
    assert exit_code == 0, output
    assert output.splitlines()[0].startswith("jq-")
    assert output.splitlines()[1].count(".") >= 1

    log = stack.log_text(job_id)
    for step in ("==> [1/6] Pulling base image", "==> [2/6] Pre-flight", "==> [3/6] Building",
                 "==> [4/6] Verifying", "==> [5/6] Pushing", "==> [6/6] Confirming", "==> Done"):
        assert step in log
    # Installed now, or taken from the layer cache of an earlier identical build.
    assert "Setting up jq" in log or log.count("Using cache") >= 2
    # Batched: a whole build's log is a handful of chunks, not one per line.
    assert stack.chunk_count(job_id) < log.count("\n") / 3

    with stack.app.app_context():
        row = db.session.get(BuildJob, job_id)
        built = row.spec_snapshot["containerfile_built"]
    assert built.startswith(f"FROM {BASE}\n") and "PIP_CERT=" in built


# 2. A package that does not exist: the job fails with the package manager's own error.
@pytest.mark.parametrize(
    "field, package, expected",
    [
        ("apt", "imagebuilder-no-such-package", "E: Unable to locate package imagebuilder-no-such-package"),
        ("pip", "imagebuilder-no-such-package", "No matching distribution found for imagebuilder-no-such-package"),
    ],
)
def test_a_missing_package_fails_with_the_package_managers_error(stack, field, package, expected):
    job_id = save_spec(stack, name=f"missing-{field}", base_image=BASE, **{field: package})
    job = stack.wait_for(job_id)
    assert job.status == JobStatus.FAILED
    assert "The build failed" in job.error and expected in job.error
    log = stack.log_text(job_id)
    assert expected in log
    assert "==> [5/6] Pushing" not in log
    assert stack.registry_client().tags(f"it-{stack.sid}/missing-{field}") == []


# 3. A private base image in the auth-protected registry: right, none and wrong credential.
@pytest.fixture(scope="module")
def private_base(stack):
    """The test base pushed to a private repository of the registry, then dropped locally."""
    ref = f"127.0.0.1:5000/it-{stack.sid}-private/base:1"
    podman = stack.podman()
    try:
        podman.tag_image(BASE, ref.rsplit(":", 1)[0], "1")
        drain(podman.push(ref, stack.registry_auth(), tls_verify=False))
        podman.remove_image(ref)
        assert podman.inspect_image(ref) is None
    finally:
        podman.close()
    assert stack.registry_client().manifest(f"it-{stack.sid}-private/base", "1") is not None
    return ref


def test_private_base_image_needs_the_right_credential(stack, private_base):
    password = stack.settings["REGISTRY_PASSWORD"]
    wrong_password = "wrong-" + password[::-1]
    with stack.app.app_context():
        for name, secret in (("good", password), ("bad", wrong_password)):
            cred, errors = create_credential({"name": f"{name}-{stack.sid}", "registry": "127.0.0.1:5000",
                                              "username": stack.settings["REGISTRY_USERNAME"], "password": secret})
            assert not errors, errors

    # The right one first: afterwards the image is in local storage, and still a build
    # without the credential must not get it.
    good = stack.wait_for(save_spec(stack, name="private-good", base_image=private_base, pip="six",
                                    pull_secret=f"good-{stack.sid}"))
    none = stack.wait_for(save_spec(stack, name="private-none", base_image=private_base, pip="six"))
    bad = stack.wait_for(save_spec(stack, name="private-bad", base_image=private_base, pip="six",
                                   pull_secret=f"bad-{stack.sid}"))

    assert_succeeded(stack, good)
    assert none.status == JobStatus.FAILED
    assert "needs a registry credential" in none.error and "use image pull secret" in none.error
    assert bad.status == JobStatus.FAILED
    assert f"Credential 'bad-{stack.sid}' was refused by registry 127.0.0.1:5000" in bad.error
    for job in (none, bad):
        assert "==> [3/6] Building" not in stack.log_text(job.id)

    # No credential anywhere: logs, job rows, pages, Redis.
    secrets = [password, wrong_password]
    from app.builds.podman import RegistryAuth

    for secret in (password, wrong_password):
        secrets += RegistryAuth("127.0.0.1:5000", stack.settings["REGISTRY_USERNAME"], secret).secret_forms()
    with stack.app.app_context():
        rows = db.session.scalars(select(BuildJob)).all()
        row_text = "\n".join(repr({c.name: getattr(r, c.name) for c in BuildJob.__table__.columns}) for r in rows)
        job_ids = [r.id for r in rows]
    logs = "\n".join(stack.log_text(job_id) for job_id in job_ids)

    client = stack.app.test_client()
    client.post("/login", data={"username": "admin", "password": "correct-horse-battery"})
    pages = []
    urls = ["/", "/credentials/"] + [f"/specs/{n}/edit?tab={t}" for n in ("private-good", "private-none", "private-bad")
                                     for t in ("info", "jobs")]
    urls += [f"/jobs/{i}" for i in job_ids] + [f"/jobs/{i}/log" for i in job_ids] + [f"/jobs/{i}/row" for i in job_ids]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        pages.append(response.get_data(as_text=True))
    assert "private-good" in pages[0]
    redis_text = stack.redis_dump()
    assert f"build-{good.id}" in redis_text  # the dump does see the RQ jobs

    for secret in secrets:
        for where, text in (("log", logs), ("job rows", row_text), ("pages", "\n".join(pages)),
                            ("redis", redis_text)):
            assert secret not in text, f"a credential form appears in the {where}"


# 4. Conda lines on a base without conda: fail in the pre-flight, before any build step.
def test_conda_without_a_conda_tool_fails_before_building(stack):
    job = stack.wait_for(save_spec(stack, name="conda-missing", base_image=BASE, conda="numpy"))
    assert job.status == JobStatus.FAILED
    assert job.error == (
        f"Conda packages need micromamba, mamba or conda in the base image, and {BASE} has none. "
        "Use a base image that ships one (for example mambaorg/micromamba) or move these packages to pip."
    )
    log = stack.log_text(job.id)
    assert "==> [2/6] Pre-flight checks" in log
    assert "STEP 1/" not in log


# 5. A pip-only change rebuilds with the APT layer from the cache.
def test_pip_only_change_reuses_the_apt_layer(stack):
    # A base of this session's own: the build host's layer cache (and the shared cache)
    # hold the steps of earlier sessions built on BASE itself.
    base = stack.build_helper_image("cached-base", f"FROM {BASE}\n")
    first = stack.wait_for(save_spec(stack, name="cached", base_image=base, apt="jq", pip="six"))
    assert_succeeded(stack, first)
    second = stack.wait_for(change_spec(stack, "cached", pip="six\nidna\n"))
    assert_succeeded(stack, second)
    assert second.revision == first.revision + 1 and second.input_hash != first.input_hash

    log = stack.log_text(second.id)
    apt_step = log.index("apt-get install")
    pip_step = log.index("pip install")
    assert "Using cache" in log[apt_step:pip_step], log[apt_step:pip_step]
    assert "Successfully installed idna" in log[pip_step:]


NOISY_PIP = """#!/bin/sh
seq -f 'noise line %g of the build output' 1 100000
exec /usr/bin/pip "$@"
"""


# 6. 100k lines of output: the log is capped, its tail kept, the pages stay fast.
def test_a_build_printing_100k_lines_is_capped_and_stays_responsive(stack):
    noisy = stack.build_helper_image(
        "noisy",
        f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n",
        {"pip": NOISY_PIP.encode()},
    )
    job_id = save_spec(stack, name="noisy", base_image=noisy, pip="six")

    client = stack.app.test_client()
    client.post("/login", data={"username": "admin", "password": "correct-horse-battery"})
    slowest = 0.0
    offset = 0
    while True:
        with stack.app.app_context():
            status = db.session.get(BuildJob, job_id).status
        for url in ("/", f"/jobs/{job_id}", f"/jobs/{job_id}/log?offset={offset}"):
            started = time.perf_counter()
            response = client.get(url)
            slowest = max(slowest, time.perf_counter() - started)
            assert response.status_code in (200, 204), (url, response.status_code)
        if status in JobStatus.FINISHED:
            break
        time.sleep(0.5)
    job = stack.wait_for(job_id)
    assert_succeeded(stack, job)

    log = stack.log_text(job_id)
    assert job.log_truncated
    assert len(log.encode()) <= stack.log_max_bytes + 1024
    assert job.log_bytes == len(log.encode())
    assert "noise line 1 of the build output" in log  # the head
    assert "[log truncated: " in log and "bytes omitted; the last" in log
    assert "noise line 100000 of the build output" in log  # the tail
    done, activated = log.rstrip().splitlines()[-2:]
    assert done.startswith("==> Done") and activated.startswith("==> r1 is the active revision")
    assert stack.chunk_count(job_id) < 100
    assert slowest < 1.0, f"a page took {slowest:.2f}s during a 100k-line build"


# 7. The injection corpus, where it passes validation, arrives as literal argv words.
# As pip it also leaves the packages installed; as micromamba it lists them (the verify
# step's `micromamba list --json`) from a file the test writes.
RECORDER = """#!/bin/sh
tool=${0##*/}
if [ "$tool" = micromamba ] && [ "$1" = list ]; then exec cat /usr/local/share/conda-list.json; fi
for word in "$@"; do printf '%s\\n' "$word" >> "/var/tmp/argv-$tool"; done
printf '%s\\n' '----' >> "/var/tmp/argv-$tool"
[ "$tool" = pip ] || exit 0
""" + PIP_STUB_INSTALL

CORPUS = [
    "curl;id", "$(id)", "`id`", "debian\nRUN id", "-oAPT::Update::Pre-Invoke::=id",
    "--extra-index-url http://x", "x @ https://h/x.whl", "numpy[url=http://x]",
    # Lines that pass validation yet hold shell syntax: markers, redirections, globs, pipes.
    'six; python_version >= "3"', "six>=1.0,<2", "six[a,b]>=1", "idna ; sys_platform != 'win32'",
    "jq=1.6*", "numpy >=1.2,<2|>3", "numpy[build=py*]", "conda-forge::numpy", "pkg>=1 # $(touch /pwned)",
]


def test_injection_corpus_arrives_as_literal_package_words(stack):
    accepted = {}
    for field in ("apt", "pip", "conda"):
        lines = []
        for line in CORPUS:  # each line that validation accepts, short of a duplicate package
            if validate_spec({"name": "x", "base_image": BASE, field: "\n".join([*lines, line])}).ok:
                lines.append(line)
        accepted[field] = getattr(validate_spec({"name": "x", "base_image": BASE, field: "\n".join(lines)}).spec, field)
    pip_words, conda_words = accepted["pip"], accepted["conda"]
    assert len(pip_words) >= 3 and len(conda_words) >= 4, (pip_words, conda_words)
    assert any(c in "".join(pip_words) for c in ';<>"') and any(c in "".join(conda_words) for c in "*|<>")
    assert accepted["apt"] == []  # no corpus line is a Debian package name
    # Version 1.6.0 satisfies every conda line the corpus leaves (jq 1.6.*, six >=1.0,<2, ...).
    conda_list = [{"name": MatchSpec(word).name.normalized, "version": "1.6.0", "build_string": "py_0",
                   "build_number": 0, "channel": "conda-forge", "platform": "linux-64"} for word in conda_words]
    recorder = stack.build_helper_image(
        "recorder",
        f"FROM {BASE}\nCOPY recorder /usr/local/bin/pip\nCOPY recorder /usr/local/bin/micromamba\n"
        "COPY conda-list.json /usr/local/share/conda-list.json\n"
        "RUN chmod 755 /usr/local/bin/pip /usr/local/bin/micromamba\n",
        {"recorder": RECORDER.encode(), "conda-list.json": json.dumps(conda_list).encode()},
    )

    job = stack.wait_for(save_spec(stack, name="injection", base_image=recorder,
                                   pip="\n".join(pip_words), conda="\n".join(conda_words)))
    assert_succeeded(stack, job)
    exit_code, output = pull_and_run(stack, job, "cat /var/tmp/argv-pip; echo '===='; cat /var/tmp/argv-micromamba;"
                                                 " echo '===='; ls /pwned /tmp/pwned 2>&1 || true")
    assert exit_code == 0, output
    pip_part, conda_part, canary = output.split("====\n")
    assert pip_part.splitlines() == ["install", "--no-cache-dir", *pip_words, "----"]
    conda_calls = conda_part.split("----\n")
    install = conda_calls[0].splitlines()
    assert install[:2] == ["install", "-y"] and install[-len(conda_words):] == conda_words, install
    assert set(install[2:-len(conda_words)]) <= {"-n", "base", "-p"}  # the target environment only
    assert conda_calls[1].splitlines() == ["clean", "--all", "-y"]
    assert "No such file" in canary and canary.count("No such file") == 2
