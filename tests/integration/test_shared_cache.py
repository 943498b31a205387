"""Two build hosts on one machine share their layers through the registry.

Host A is the build user the other tests use; host B a second rootless user with storage
and a Podman service of its own (scripts/podman-rootless.sh --second-host), each with its
own worker, one Redis and one database. A spec with an APT layer is built on A; A's worker
stops; a pip line changes; B builds it with A's APT layer from the shared cache.
"""
from __future__ import annotations

import re
import subprocess
import time

import pytest
import requests
from sqlalchemy import select

from app.builds.cache import prune_cache
from app.builds.podman import Podman
from app.builds.prefetch import local_keys
from app.extensions import db
from app.models import CacheLayer
from integration.support import BASE, REGISTRY_HOST, REPO, assert_succeeded, change_spec, save_spec

APT_LINE = "jq"


@pytest.fixture(scope="module")
def host_b(services):
    """Host B's Podman URL, set up by the project's script (idempotent)."""
    done = subprocess.run(["bash", str(REPO / "scripts/podman-rootless.sh"), "--second-host"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"scripts/podman-rootless.sh --second-host failed:\n{done.stderr[-3000:]}", pytrace=False)
    found = subprocess.run(["bash", str(REPO / "scripts/env.sh")], capture_output=True, text=True, timeout=60)
    urls = [line.split("=", 1)[1] for line in found.stdout.splitlines() if line.startswith("export SECOND_PODMAN_URL=")]
    assert urls, f"scripts/env.sh names no second build host:\n{found.stdout}"
    url = urls[0]
    yield url
    podman = Podman(url)
    try:  # what the tests tagged in B's storage (layers stay, like on A)
        for image in podman.client.api.get("/images/json").json():
            for name in image.get("Names") or []:
                if "/it-" in name:
                    podman.client.api.delete(f"/images/{name.replace('/', '%2F')}", params={"force": True})
    finally:
        podman.close()


@pytest.fixture(scope="module")
def shared_base(stack):
    """A base image in the registry that only this session has built on, so neither
    host has its layers cached from before, with a pull secret for it."""
    return stack.registry_base("cache-base")


@pytest.fixture(scope="module", autouse=True)
def back_on_host_a(stack):
    """The session's stack gets its own worker back afterwards: the tests here leave a
    worker of host B running, and host B has none of host A's local images."""
    yield
    stack.stop_worker(stack.worker)
    stack.start_worker()


def layers(stack, image: str) -> list[str]:
    """The layer digests of a pushed image, from the registry."""
    repository, tag = image.split("/", 1)[1].rsplit(":", 1)
    response = requests.get(f"http://{REGISTRY_HOST}/v2/{repository}/manifests/{tag}",
                            auth=(stack.settings["REGISTRY_USERNAME"], stack.settings["REGISTRY_PASSWORD"]),
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=30)
    response.raise_for_status()
    return [layer["digest"] for layer in response.json()["layers"]]


def on_host(stack, url: str, name: str, **settings):
    """Stop the running worker; start the one of build host `name` at `url`."""
    stack.stop_worker(stack.worker)
    stack.worker = stack.spawn_worker(stack.workdir / f"worker-{name}.log", PODMAN_URL=url, BUILD_HOST_NAME=name,
                                      **settings)


def test_a_build_on_a_local_base_pushes_its_layers_to_the_shared_cache(stack):
    """A localhost/ base needs no registry credential to pull, but the cache does: the build
    request carries the push credentials for the cache repository, so its layers are shared
    (before, each push was refused and the build ran a second time without the cache)."""
    on_host(stack, stack.settings["PODMAN_URL"], "host-a")
    job = stack.wait_for(save_spec(stack, name="local-base-cache", base_image=BASE, pip="six==1.16.0"))
    assert_succeeded(stack, job)
    log = stack.log_text(job.id)
    assert "refused the shared cache's push" not in log
    assert log.count("STEP 1/") == 1, log  # one build, not a refused one and then another
    assert re.search(r"Shared cache: 0 layer\(s\) from the shared cache, [1-9]\d* pushed to", log), log
    tags = stack.registry_client().tags(f"it-{stack.sid}/imagebuilder-cache")
    assert job.cache_layers and {s["key"] for s in job.cache_layers} <= set(tags)


def test_a_second_build_host_takes_the_apt_layer_from_the_shared_cache(stack, host_b, shared_base):
    base, secret = shared_base
    name = "shared-cache"
    on_host(stack, stack.settings["PODMAN_URL"], "host-a")
    cold = stack.wait_for(save_spec(stack, name=name, base_image=base, pull_secret=secret, apt=APT_LINE,
                                    pip="six==1.16.0"))
    assert_succeeded(stack, cold)
    cold_log = stack.log_text(cold.id)
    assert "Setting up jq" in cold_log  # built here, for real
    assert "layer: from the shared cache" not in cold_log
    assert [(s["layer"], s["source"]) for s in cold.cache_layers] == [
        ("CA bundle layer", "built"), ("APT layer", "built"), ("pip layer", "built")]
    assert "Shared cache: 0 layer(s) from the shared cache, 3 pushed to" in cold_log

    on_host(stack, host_b, "host-b")
    warm = stack.wait_for(change_spec(stack, name, pip="six==1.17.0"))
    assert_succeeded(stack, warm)
    warm_log = stack.log_text(warm.id)
    assert f"APT layer: from the shared cache, built on host-a for r{cold.revision}" in warm_log
    assert f"CA bundle layer: from the shared cache, built on host-a for r{cold.revision}" in warm_log
    assert "Setting up jq" not in warm_log and "apt-get update" in warm_log  # the step, not its run
    assert "Successfully installed six-1.17.0" in warm_log
    assert [(s["layer"], s["source"]) for s in warm.cache_layers] == [
        ("CA bundle layer", "shared"), ("APT layer", "shared"), ("pip layer", "built")]
    # The pushed image is A's base, CA bundle and APT layers, byte for byte, and B's pip layer.
    cold_layers, warm_layers = layers(stack, cold.image), layers(stack, warm.image)
    assert warm_layers[:-1] == cold_layers[:-1] and warm_layers[-1] != cold_layers[-1]
    apt_key = warm.cache_layers[1]["key"]
    assert apt_key == cold.cache_layers[1]["key"]

    # Pruning everything unused "for zero days" keeps the active revision's layers
    # (r2's, auto-activated) and deletes r1's pip layer.
    stack.wait_for_active(name, warm.revision)
    with stack.app.app_context():
        summary = prune_cache(keep_days=0)
        assert summary.errors == []
        assert cold.cache_layers[2]["key"] in summary.deleted
        assert not {s["key"] for s in warm.cache_layers} & set(summary.deleted)
        left = db.session.scalars(select(CacheLayer.cache_key)).all()
    tags = stack.registry_client().tags(f"it-{stack.sid}/imagebuilder-cache")
    assert {s["key"] for s in warm.cache_layers} <= set(tags) and cold.cache_layers[2]["key"] not in tags
    assert cold.cache_layers[2]["key"] not in left and apt_key in left


def test_a_cache_push_the_registry_refuses_still_gives_a_succeeded_job(stack, host_b, shared_base):
    base, secret = shared_base
    # localhost:5000 is the same registry under a name the build has no credential for: 401.
    refused = f"localhost:{REGISTRY_HOST.rsplit(':', 1)[1]}/it-{stack.sid}/cache-that-refuses"
    on_host(stack, host_b, "host-b", BUILD_CACHE_REPO=refused)
    job = stack.wait_for(save_spec(stack, name="refused-cache", base_image=base, pull_secret=secret,
                                   pip="six==1.15.0"))
    assert_succeeded(stack, job)
    text = stack.log_text(job.id)
    assert f"Warning: the registry refused the shared cache's push to {refused} (unauthorized: authentication " \
           "required)" in text
    assert "Successfully installed six-1.15.0" in text and "==> Done" in text
    assert stack.registry_client().tags(f"it-{stack.sid}/cache-that-refuses") == []


def test_a_build_host_fetches_other_hosts_layers_ahead_and_its_rebuild_finds_them_at_home(stack, host_b):
    """Host B's worker, with no build to run, pulls the layers host A pushed for the active
    revision (app/builds/prefetch.py, on B's own queue); B's first rebuild of the spec then
    takes them from its own storage and pulls nothing while it builds."""
    base, secret = stack.registry_base("prefetch-base", distinct=True)  # no layer of it on B yet
    name = "fetched-ahead"
    on_host(stack, stack.settings["PODMAN_URL"], "host-a")
    cold = stack.wait_for(save_spec(stack, name=name, base_image=base, pull_secret=secret, apt="bc",
                                    pip="six==1.16.0"))
    assert_succeeded(stack, cold)
    keys = [s["key"] for s in cold.cache_layers]
    assert len(keys) == 3 and all(keys)
    repository = f"{stack.registry}/imagebuilder-cache"

    log_path = stack.workdir / "worker-host-b.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    on_host(stack, host_b, "host-b", BUILD_CACHE_PREFETCH="true", BUILD_CACHE_PREFETCH_INTERVAL="2")
    round_line = re.compile(r"event=cache_prefetched host=host-b repository=\S+ pulled=(\d+) present=\d+ errors=0")
    podman, deadline = Podman(host_b), time.monotonic() + 180
    try:
        while not (set(keys) <= local_keys(podman, repository)
                   and (pulled := round_line.search(log_path.read_text(errors="replace")[start:]))):
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[start:][-3000:]
            time.sleep(1)
    finally:
        podman.close()
    assert int(pulled.group(1)) >= 3  # this spec's three, and host A's layers of the other tests' specs

    warm = stack.wait_for(change_spec(stack, name, pip="six==1.17.0"))
    assert_succeeded(stack, warm)
    warm_log = stack.log_text(warm.id)
    assert (f"APT layer: from the shared cache, built on host-a for r{cold.revision} (already on this host)"
            in warm_log), warm_log
    assert "Cache pulled from remote" not in warm_log  # nothing pulled while it built
    assert "Setting up bc" not in warm_log and "Successfully installed six-1.17.0" in warm_log
    assert [(s["layer"], s["source"]) for s in warm.cache_layers] == [
        ("CA bundle layer", "shared"), ("APT layer", "shared"), ("pip layer", "built")]
    cold_layers, warm_layers = layers(stack, cold.image), layers(stack, warm.image)
    assert warm_layers[:-1] == cold_layers[:-1] and warm_layers[-1] != cold_layers[-1]
