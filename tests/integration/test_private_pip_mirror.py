"""A pip mirror that needs a password, for real: pypiserver on 127.0.0.1 with an htpasswd
file, requiring it for list and download, serving a wheel this test makes. The worker's
PIP_INDEX_URL carries the user name and password; the build installs from the mirror
(the build's RUN steps share the host's network here, see ENVIRONMENT.md), and then the
password is looked for, and must be missing, everywhere it could have gone: the image's
history and config, every layer's bytes, the job log, the worker's log, the pages, every
text column of the database, Redis (the RQ job included) and Podman's build scratch
directories on the build host.
"""
from __future__ import annotations

import base64
import glob
import gzip
import hashlib
import io
import os
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import requests
from passlib.apache import HtpasswdFile
from sqlalchemy import MetaData, select

from app.auth.service import create_or_update_user, issue_token
from app.extensions import db
from app.models import ImageSpec, JobStatus
from app.specs.service import rebuild_spec
from integration.test_shared_cache import host_b  # noqa: F401 (the second build host's fixture)
from integration.support import ADMIN_PASSWORD, ADMIN_USERNAME, BASE, assert_succeeded, pull_and_run, save_spec

pytestmark = pytest.mark.integration

PACKAGE = "ib-private-probe"
MODULE = "ib_private_probe"
USER = "robot"
PASSWORD = "Mirror-Pw-" + base64.b32encode(os.urandom(10)).decode().lower()  # no character URLs encode


def _wheel(directory: Path) -> Path:
    """A pure-Python wheel of PACKAGE 1.0 whose module prints a marker, written as a zip."""
    dist_info = f"{MODULE}-1.0.dist-info"
    files = {
        f"{MODULE}/__init__.py": b'MARKER = "installed from the private mirror"\n',
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: imagebuilder-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for name, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n").encode()
    path = directory / f"{MODULE}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """pypiserver's base URL (http://127.0.0.1:PORT), with USER/PASSWORD required to list
    and download; its output file is the second value (it logs no requests with -P)."""
    root = tmp_path_factory.mktemp("pip-mirror")
    packages = root / "packages"
    packages.mkdir()
    _wheel(packages)
    htpasswd = HtpasswdFile(str(root / "htpasswd"), new=True)
    htpasswd.set_password(USER, PASSWORD)
    htpasswd.save()
    port = _free_port()
    log_path = root / "pypiserver.log"
    server_bin = Path(sys.executable).with_name("pypi-server")
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(
            [str(server_bin), "run", "-i", "127.0.0.1", "-p", str(port), "-a", "download,list,update",
             "-P", str(root / "htpasswd"), "--server", "wsgiref", str(packages)],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/simple/", timeout=2).status_code == 401:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pypiserver did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        # The mirror really wants the password, and has the wheel for it.
        assert requests.get(f"{url}/simple/{PACKAGE}/", timeout=10).status_code == 401
        listing = requests.get(f"{url}/simple/{PACKAGE}/", auth=(USER, PASSWORD), timeout=10)
        assert listing.status_code == 200 and f"{MODULE}-1.0-py3-none-any.whl" in listing.text
        yield url, log_path
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


@pytest.fixture(scope="module")
def registry_base(stack):
    """A base image of this session's own (no earlier session's layers for these steps)
    in the registry, with a pull secret for it: the build then has registry auth for the
    shared cache's pushes too."""
    return stack.registry_base("private-pip-base")


def _index(mirror_url: str, password: str = PASSWORD) -> str:
    return f"{mirror_url.replace('http://', f'http://{USER}:{password}@')}/simple"


@pytest.fixture
def worker_with_index(stack):
    """Restart the stack's worker with PIP_INDEX_URL=`index`; the web app gets it too
    (as a deployment's web process would), and both go back afterwards."""

    def start(index: str):
        stack.stop_worker(stack.worker)
        stack.worker = stack.spawn_worker(stack.worker_log, PIP_INDEX_URL=index)
        stack.app.config["PIP_INDEX_URL"] = index

    yield start
    stack.app.config["PIP_INDEX_URL"] = None
    stack.stop_worker(stack.worker)
    stack.start_worker()


def _image_bytes(stack, image: str) -> list[tuple[str, bytes]]:
    """Every file of `image` as Podman exports it (podman image save, docker-archive):
    the manifest, the config with its history, and each layer tar, gzip-opened when
    compressed; each with the names of the files inside the layers."""
    podman = stack.podman()
    try:
        response = podman.client.api.get(f"/images/{image.replace('/', '%2F')}/get",
                                          params={"format": "docker-archive"}, stream=True)
        assert response.status_code == 200, response.text[:500]
        archive = response.content
    finally:
        podman.close()
    parts = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            parts.append((member.name, data))
            if member.name.endswith(".tar") or data[257:262] == b"ustar":
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    parts.append((f"{member.name}:names", "\n".join(layer.getnames()).encode()))
    return parts


def _history(stack, image: str) -> str:
    """``podman history --no-trunc`` of the image, from the API it reads, and its config."""
    podman = stack.podman()
    try:
        history = podman.client.api.get(f"/images/{image.replace('/', '%2F')}/history")
        assert history.status_code == 200, history.text[:500]
        return history.text + "\n" + repr(podman.inspect_image(image))
    finally:
        podman.close()


def _database_text(stack) -> str:
    """Every row of every table, all columns as text."""
    with stack.app.app_context():
        metadata = MetaData()
        metadata.reflect(bind=db.engine)
        parts = []
        with db.engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)):
                    parts.append(f"{table.name}: {tuple(row)!r}")
        return "\n".join(parts)


def _pages(stack, name: str, job_ids: list[int]) -> str:
    client = stack.app.test_client()
    client.post("/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    urls = ["/", f"/specs/{name}/edit?tab=info", f"/specs/{name}/edit?tab=jobs", f"/specs/{name}/edit?tab=history",
            "/audit"]
    urls += [f"/jobs/{i}{tail}" for i in job_ids for tail in ("", "/log", "/row", "/log.txt", "/packages")]
    with stack.app.app_context():
        token = issue_token(create_or_update_user(ADMIN_USERNAME, ADMIN_PASSWORD))
    api = [f"/api/v1/jobs/{i}" for i in job_ids] + [f"/api/v1/specs/{name}", f"/api/v1/specs/{name}/jobs"]
    pages = []
    for url in urls + api:
        headers = {"Authorization": f"Bearer {token}"} if url.startswith("/api/") else {}
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.status_code)
        pages.append(response.get_data(as_text=True))
    with stack.app.app_context():
        spec = db.session.scalar(select(ImageSpec).where(ImageSpec.name == name))
        form = {"name": name, "base_image": spec.base_image, "apt": spec.apt, "pip": spec.pip, "conda": spec.conda}
    preview = client.post(f"/specs/validate?spec={name}", data=form)
    assert preview.status_code == 200 and "pip install" in preview.get_data(as_text=True)
    pages.append(preview.get_data(as_text=True))
    return "\n".join(pages)


def _scratch_leftovers() -> list[str]:
    """Files that hold the password under the build users' temporary directories (Podman's
    libpod_builder* build scratch, where the secret lies while the build runs) and their
    runtime directories (buildah's run state)."""
    found = []
    patterns = ("/var/tmp/libpod_builder*/**", "/tmp/libpod_builder*/**", "/run/user/*/**")
    for path in (path for pattern in patterns for path in glob.glob(pattern, recursive=True)):
        try:
            if os.path.isfile(path) and PASSWORD.encode() in Path(path).read_bytes():
                found.append(path)
        except OSError:  # another build's scratch, removed just now
            continue
    return found


def test_a_private_mirror_with_a_password_installs_and_the_password_goes_nowhere(stack, mirror, worker_with_index,
                                                                                 registry_base, host_b):
    mirror_url, _ = mirror
    index = _index(mirror_url)
    masked_for_pip = f"{mirror_url.replace('http://', f'http://{USER}:****@')}/simple"  # pip's own mask
    worker_with_index(index)
    base, pull_secret = registry_base
    name = "private-pip"
    first = stack.wait_for(save_spec(stack, name=name, base_image=base, pull_secret=pull_secret, apt="",
                                     pip=PACKAGE))
    assert_succeeded(stack, first)
    log = stack.log_text(first.id)
    assert f"Successfully installed {PACKAGE}-1.0" in log
    assert "--mount=type=secret,id=imagebuilder-pip-index" in log
    exit_code, output = pull_and_run(stack, first, f"python3 -c 'import {MODULE}; print({MODULE}.MARKER)'")
    assert exit_code == 0 and "installed from the private mirror" in output, output
    # pip looked in the mirror only (no other index), which answers only with the password
    # (the fixture checked; the next test has the wrong one refused), and says so masked.
    assert f"Looking in indexes: {masked_for_pip}" in log

    # The snapshot (and so the job page) names the index with its password masked.
    with stack.app.app_context():
        built = db.session.get(type(first), first.id).spec_snapshot["containerfile_built"]
    masked = f"{mirror_url.replace('http://', f'http://{USER}:***@')}/simple"
    assert f"IMAGEBUILDER_PIP_INDEX_URL='{masked}'" in built and "PIP_INDEX_URL=" not in built.replace(
        "IMAGEBUILDER_PIP_INDEX_URL=", "")

    # The same spec again (a rebuild): measured, not assumed, what the layer cache does
    # with the secret-mounting pip step on this Podman.
    with stack.app.app_context():
        again_id = rebuild_spec(db.session.scalar(select(ImageSpec).where(ImageSpec.name == name))).id
    again = stack.wait_for(again_id)
    assert_succeeded(stack, again)
    again_log = stack.log_text(again.id)
    pip_step = again_log[again_log.index("--mount=type=secret"):]
    pip_step = pip_step[:pip_step.index("COMMIT")]
    # Podman 4.3.1: the build host's own cache reuses the step (the pip.conf is not part of
    # its key, the masked URLs on its line are), and the step has a shared cache key too.
    assert "Using cache" in pip_step and f"Successfully installed {PACKAGE}" not in pip_step, pip_step
    pip_keys = {layer["key"] for job in (first, again) for layer in job.cache_layers if layer["layer"] == "pip layer"}
    assert len(pip_keys) == 1 and None not in pip_keys, (first.cache_layers, again.cache_layers)
    # The shared cache is not turned off by the credential (the context it sees holds none):
    # both layers are pushed to it, the pip step that mounts the secret too.
    assert "nothing of this build is pushed to the shared cache" not in log
    assert [(layer["layer"], layer["source"], bool(layer["key"])) for layer in first.cache_layers] == [
        ("CA bundle layer", "built", True), ("pip layer", "built", True)], first.cache_layers

    # A second build host, which never built it, takes the pip step from the shared cache.
    stack.stop_worker(stack.worker)
    stack.worker = stack.spawn_worker(stack.workdir / "worker-pip-host-b.log", PODMAN_URL=host_b,
                                      BUILD_HOST_NAME="host-b", PIP_INDEX_URL=index)
    with stack.app.app_context():
        on_b_id = rebuild_spec(db.session.scalar(select(ImageSpec).where(ImageSpec.name == name))).id
    on_b = stack.wait_for(on_b_id)
    assert_succeeded(stack, on_b)
    on_b_log = stack.log_text(on_b.id)
    assert f"pip layer: from the shared cache, built on " in on_b_log, on_b_log[-3000:]
    assert f"Successfully installed {PACKAGE}" not in on_b_log
    assert [(layer["layer"], layer["source"]) for layer in on_b.cache_layers] == [
        ("CA bundle layer", "shared"), ("pip layer", "shared")]

    job_ids = [first.id, again.id, on_b.id]
    image = first.image
    image_parts = _image_bytes(stack, image)
    layer_names = "\n".join(data.decode(errors="replace") for part, data in image_parts if part.endswith(":names"))
    assert f"{MODULE}/__init__.py" in layer_names  # the export really holds the pip layer
    places = {
        "image history and config": _history(stack, image),
        "job logs": "\n".join(stack.log_text(i) for i in job_ids),
        "worker logs": "\n".join(path.read_text(errors="replace") for path in stack.workdir.glob("worker*.log")),
        "pages": _pages(stack, name, job_ids),
        "database": _database_text(stack),
        "redis (RQ jobs included)": stack.redis_dump(),
    }
    assert f"build-{first.id}" in places["redis (RQ jobs included)"]  # the dump sees the RQ jobs
    assert masked in places["pages"]  # the job page shows the Containerfile built, masked
    for where, text in places.items():
        assert PASSWORD not in text, f"the mirror's password is in the {where}"
    for part, data in image_parts:
        assert PASSWORD.encode() not in data, f"the mirror's password is in {part} of the exported image"
    assert _scratch_leftovers() == []


def test_a_wrong_mirror_password_fails_the_build_without_showing_it(stack, mirror, worker_with_index):
    mirror_url, _ = mirror
    wrong = "Wrong-Pw-" + base64.b32encode(os.urandom(10)).decode().lower()
    worker_with_index(_index(mirror_url, wrong))
    base = stack.build_helper_image("private-pip-wrong-base", f"FROM {BASE}\n")
    job = stack.wait_for(save_spec(stack, name="private-pip-wrong", base_image=base, apt="", pip=PACKAGE))
    assert job.status == JobStatus.FAILED
    log = stack.log_text(job.id)
    # pip was refused (and waited for no prompt: PIP_NO_INPUT); nothing was pushed.
    assert f"No matching distribution found for {PACKAGE}" in job.error, job.error
    # pip 23 says no more than that (the 401 is not in its output), with the index masked.
    assert f"Looking in indexes: {mirror_url.replace('http://', f'http://{USER}:****@')}/simple" in log
    assert "==> [5/6] Pushing" not in log
    for where, text in (("log", log), ("error", job.error), ("database", _database_text(stack)),
                        ("worker log", stack.worker_log.read_text(errors="replace"))):
        assert wrong not in text, f"the wrong password is in the {where}"
