"""Build claims and the orphan sweep (app/builds/orphans.py), and the build-container list
it reads: real files, locks and processes that die; fakes only at the Podman API boundary.
The real thing, a worker killed with SIGKILL mid-build, is tests/integration/test_faults.py."""
import os
import signal
import time

import pytest

from app.builds import orphans
from app.builds.orphans import BuildClaim, _read_claims, claim_prefix, sweep_orphan_builds
from app.builds.podman import BuildHandle, Podman, PodmanFailure, PodmanUnavailable

URL = "unix:///nonexistent/podman.sock"


@pytest.fixture(autouse=True)
def claims_root(tmp_path, monkeypatch):
    monkeypatch.setattr(orphans, "CLAIMS_ROOT", str(tmp_path))


def claim_files():
    """The claim files of URL's service, by job."""
    prefix = claim_prefix(URL)
    return sorted(name[len(prefix):] for name in os.listdir(orphans.CLAIMS_ROOT) if name.startswith(prefix))


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
    live, dead = _read_claims(URL)
    assert jobs(live) == ["q-build-1"] and dead == []
    kill(pid)
    live, dead = _read_claims(URL)
    assert live == [] and [record.job for record, _path, _fd in dead] == ["q-build-1"]
    for _record, _path, fd in dead:
        os.close(fd)


def test_a_released_claim_is_gone_when_the_build_ended_and_kept_when_unknown():
    ended = BuildClaim.take(URL, "q-build-1", BuildHandle("base", 1.0), "reg/x:1")
    unknown = BuildClaim.take(URL, "q-build-2", BuildHandle("base", 1.0), "reg/x:2")
    ended.release(ended=True)
    unknown.release(ended=False)
    assert claim_files() == ["q-build-2.json"]


def test_a_claim_its_writer_died_writing_is_removed():
    open(os.path.join(orphans.CLAIMS_ROOT, f"{claim_prefix(URL)}q-build-1.json.123.new"), "w").close()
    assert _read_claims(URL) == ([], [])
    assert os.listdir(orphans.CLAIMS_ROOT) == []


def test_the_sweep_keeps_a_dead_claim_while_podman_does_not_answer():
    kill(claim_in_child())
    assert sweep_orphan_builds(URL) == []  # nothing listens at URL
    assert claim_files() == ["q-build-1.json"]


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
        assert claim_files() == ["q-build-1.json", "q-build-2.json"]

        # Nothing of it left: its half-built tag goes, and the claim with it.
        assert sweep_orphan_builds(URL) == []
        assert fake.removed_images == ["reg/x:q-build-1"]
        assert claim_files() == ["q-build-2.json"]
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
    assert claim_files() == ["q-build-1.json"]


class Answer:
    def __init__(self, status_code, body):
        self.status_code = status_code
        self.body = body
        self.text = str(body)

    def json(self):
        return self.body


@pytest.mark.parametrize("answers, expected", [
    # Podman 4.3 fails the whole list when a build removes its container meanwhile.
    ([Answer(500, {"message": "determining buildah container for container 90fd: container not known"}),
      Answer(200, [{"Id": "a", "State": "storage"}, {"Id": "b", "State": "running"}])], ["a"]),
    ([Answer(200, [])], []),
])
def test_listing_build_containers_asks_again_when_one_vanished_meanwhile(answers, expected):
    podman = Podman(URL)
    podman.client.api.get = lambda *args, **kwargs: answers.pop(0)
    assert [c["Id"] for c in podman.build_containers()] == expected


def test_listing_build_containers_reports_other_errors_at_once():
    podman = Podman(URL)
    answers = [Answer(500, {"message": "storage is corrupt"}), Answer(200, [])]
    podman.client.api.get = lambda *args, **kwargs: answers.pop(0)
    with pytest.raises(PodmanFailure, match="storage is corrupt"):
        podman.build_containers()
