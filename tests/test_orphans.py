"""Build claims and the orphan sweep (app/builds/orphans.py): real files and locks, real
processes that die; a fake Podman only at the API boundary. The real thing, a worker
killed with SIGKILL mid-build, is tests/integration/test_faults.py."""
import os
import signal
import time

import pytest

from app.builds import orphans
from app.builds.orphans import BuildClaim, _read_claims, claims_dir, sweep_orphan_builds
from app.builds.podman import BuildHandle, PodmanUnavailable

URL = "unix:///nonexistent/podman.sock"


@pytest.fixture(autouse=True)
def claims_root(tmp_path, monkeypatch):
    monkeypatch.setattr(orphans, "CLAIMS_ROOT", str(tmp_path))


def claim_in_child(job="q-build-1", started_at=100.0, before=()):
    """A process that takes a claim and waits to be killed; its pid once it holds it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        BuildClaim.take(URL, job, BuildHandle("base", started_at, set(before)), f"reg/x:{job}")
        os.write(write_end, b"1")
        time.sleep(60)
        os._exit(0)
    os.close(write_end)
    assert os.read(read_end, 1) == b"1"
    os.close(read_end)
    return pid


def kill(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def jobs(records):
    return [record.job for record in records]


def test_a_claim_is_live_while_its_process_lives_and_dead_after_sigkill():
    pid = claim_in_child()
    live, dead = _read_claims(claims_dir(URL))
    assert jobs(live) == ["q-build-1"] and dead == []
    kill(pid)
    live, dead = _read_claims(claims_dir(URL))
    assert live == [] and [record.job for record, _path, _fd in dead] == ["q-build-1"]
    for _record, _path, fd in dead:
        os.close(fd)


def test_a_released_claim_is_gone_when_the_build_ended_and_kept_when_unknown():
    ended = BuildClaim.take(URL, "q-build-1", BuildHandle("base", 1.0), "reg/x:1")
    unknown = BuildClaim.take(URL, "q-build-2", BuildHandle("base", 1.0), "reg/x:2")
    ended.release(ended=True)
    unknown.release(ended=False)
    assert sorted(os.listdir(claims_dir(URL))) == ["q-build-2.json"]


def test_a_claim_its_writer_died_writing_is_removed():
    folder = claims_dir(URL)
    os.makedirs(folder)
    open(os.path.join(folder, "q-build-1.json.123.new"), "w").close()
    assert _read_claims(folder) == ([], [])
    assert os.listdir(folder) == []


def test_the_sweep_keeps_a_dead_claim_while_podman_does_not_answer():
    kill(claim_in_child())
    assert sweep_orphan_builds(URL) == []  # nothing listens at URL
    assert os.listdir(claims_dir(URL)) == ["q-build-1.json"]


class FakePodman:
    def __init__(self, containers):
        self.containers = containers
        self.removed_containers = []
        self.removed_images = []

    def __call__(self, url, timeout=None):
        return self

    def ping(self):
        pass

    def build_containers(self):
        return [{"Id": cid, "Created": created} for cid, created in self.containers.items()]

    def remove_container(self, container):
        self.removed_containers.append(container)
        del self.containers[container]

    def remove_image(self, ref):
        self.removed_images.append(ref)

    def close(self):
        pass


def test_the_sweep_stops_only_a_dead_builds_containers_then_clears_its_claim(monkeypatch):
    fake = FakePodman({"old": 50.0, "dead-step": 150.0, "live-step": 250.0})
    killed = []
    monkeypatch.setattr(orphans, "Podman", fake)
    monkeypatch.setattr(orphans, "kill_run_steps", lambda url, container: killed.append(container) or 1)
    kill(claim_in_child("q-build-1", started_at=100.0, before={"old"}))
    live = claim_in_child("q-build-2", started_at=200.0, before={"old", "dead-step"})
    try:
        assert sweep_orphan_builds(URL) == ["dead-step"]
        assert killed == ["dead-step"] and fake.removed_containers == ["dead-step"]
        assert sorted(os.listdir(claims_dir(URL))) == ["q-build-1.json", "q-build-2.json"]

        # Nothing of it left: its half-built tag goes, and the claim with it.
        assert sweep_orphan_builds(URL) == []
        assert fake.removed_images == ["reg/x:q-build-1"]
        assert os.listdir(claims_dir(URL)) == ["q-build-2.json"]
        assert set(fake.containers) == {"old", "live-step"}
    finally:
        kill(live)


def test_a_sweep_failing_midway_keeps_the_claim(monkeypatch):
    fake = FakePodman({"step": 150.0})

    def unavailable():
        raise PodmanUnavailable("gone")

    fake.build_containers = unavailable
    monkeypatch.setattr(orphans, "Podman", fake)
    kill(claim_in_child(started_at=100.0))
    assert sweep_orphan_builds(URL) == []
    assert os.listdir(claims_dir(URL)) == ["q-build-1.json"]
