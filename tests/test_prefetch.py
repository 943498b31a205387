"""Fetching the shared cache ahead (app/builds/prefetch.py): which keys a host wants, the
schedule on the host's own queue, and what the image pruning keeps. The pulls themselves
run against real Podman in tests/integration/test_shared_cache.py."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.builds import prefetch
from app.builds.maintenance import _tags_to_keep
from app.builds.podman import END
from app.extensions import db
from app.models import BuildJob, CacheLayer, ImageSpec, JobStatus, utcnow
from app.revisions.active import set_active

REGISTRY = "127.0.0.1:5000/imagebuilder"


def key(n: int) -> str:
    return f"{n:064x}"


def built(api, name: str, keys: list[tuple[int, str]], minutes_ago: int, active: bool = True) -> BuildJob:
    """A spec whose first job succeeded `minutes_ago`, its steps' cache keys pushed by the
    given hosts (the runner's cache_layers and CacheLayer rows)."""
    response = api.post("/api/v1/specs", json={"name": name, "base_image": "localhost/debian:bookworm",
                                               "pip": ["six"]})
    assert response.status_code == 201, response.get_json()
    job = db.session.get(BuildJob, response.get_json()["job"]["id"])
    job.status, job.digest = JobStatus.SUCCEEDED, "sha256:" + "d" * 64
    job.image = f"{REGISTRY}/{name}:{job.tag}"
    job.finished_at = utcnow() - timedelta(minutes=minutes_ago)
    job.cache_layers = [{"layer": f"step {n}", "key": key(n), "source": "built"} for n, _host in keys]
    for n, host in keys:
        if db.session.scalar(select(CacheLayer).where(CacheLayer.cache_key == key(n))) is None:
            db.session.add(CacheLayer(cache_key=key(n), layer=f"step {n}", built_host=host, spec_name=name,
                                      revision=job.revision))
    db.session.commit()
    if active:
        set_active(job.spec, job)
    return job


@pytest.fixture
def on_host_b(app):
    app.config.update(REGISTRY=REGISTRY, BUILD_HOST_NAME="host-b", BUILD_CACHE="registry",
                      BUILD_CACHE_PREFETCH=True, BUILD_CACHE_PREFETCH_SPECS=20)
    return app


def test_a_host_wants_other_hosts_keys_of_active_revisions_newest_first(on_host_b, api):
    built(api, "older", [(1, "host-a"), (2, "host-a")], minutes_ago=30)
    built(api, "newer", [(1, "host-a"), (3, "host-c"), (4, "host-b")], minutes_ago=5)  # 4: B's own
    built(api, "inactive", [(5, "host-a")], minutes_ago=1, active=False)
    assert prefetch.wanted("host-b", 20) == [key(1), key(3), key(2)]
    assert prefetch.wanted("host-b", 1) == [key(1), key(3)]  # the newest active revision only
    assert prefetch.wanted("host-a", 20) == [key(3), key(4)]


def test_a_key_whose_row_was_pruned_is_not_wanted(on_host_b, api):
    built(api, "demo", [(1, "host-a"), (2, "host-a")], minutes_ago=5)
    db.session.execute(CacheLayer.__table__.delete().where(CacheLayer.cache_key == key(2)))
    db.session.commit()
    assert prefetch.wanted("host-b", 20) == [key(1)]


@pytest.mark.parametrize("setting, mode", [(False, "registry"), (True, "local"), (True, "off")])
def test_off_or_without_the_shared_cache_nothing_is_wanted_or_kept(on_host_b, api, setting, mode):
    on_host_b.config.update(BUILD_CACHE_PREFETCH=setting, BUILD_CACHE=mode)
    built(api, "demo", [(1, "host-a")], minutes_ago=5)
    assert prefetch.kept_keys() == set()
    assert prefetch.prefetch().pulled == []
    assert prefetch.run_prefetch(on_host_b) is False


def test_image_pruning_keeps_the_fetched_cache_tags(on_host_b, api):
    built(api, "demo", [(1, "host-a"), (2, "host-b")], minutes_ago=5)
    keep = _tags_to_keep(keep_recent=1)
    assert keep["imagebuilder-cache"] == {key(1)}  # B's own layer 2 lives on as its build's parent
    assert "latest" in keep["demo"]


def test_image_pruning_keeps_no_cache_tag_with_prefetch_off(on_host_b, api):
    on_host_b.config["BUILD_CACHE_PREFETCH"] = False
    built(api, "demo", [(1, "host-a")], minutes_ago=5)
    assert _tags_to_keep(keep_recent=1).get("imagebuilder-cache", set()) == set()


@pytest.mark.parametrize("name, slug", [("host-a", "host-a"), ("build host #2", "build-host-2"), ("", "host"),
                                        ("ü" * 3, "host"), ("a" * 300, "a" * 100)])
def test_host_slug(name, slug):
    assert prefetch.host_slug(name) == slug


def test_one_round_per_interval_goes_on_the_hosts_own_queue(on_host_b, private_redis, monkeypatch):
    from app.builds.queue import build_queue

    on_host_b.config["BUILD_CACHE_PREFETCH_INTERVAL"] = 60
    monkeypatch.setattr(prefetch, "_next_run", 0.0)
    queue = prefetch.host_queue()
    assert queue.name == f"{on_host_b.config['RQ_QUEUE']}-host-host-b"
    try:
        assert prefetch.run_prefetch(on_host_b) is True
        assert queue.job_ids == [f"{on_host_b.config['RQ_QUEUE']}-prefetch-host-b"]
        assert build_queue().job_ids == []  # never on the build queue: another host would take it
        assert prefetch.run_prefetch(on_host_b) is False  # not due yet
        monkeypatch.setattr(prefetch, "_next_run", 0.0)
        assert prefetch.run_prefetch(on_host_b) is False  # another worker of this host has the interval
        private_redis.flushdb()  # the lock gone (expired), the round still waiting: not twice
        queue.enqueue(prefetch.PREFETCH_FUNCTION, job_id=f"{on_host_b.config['RQ_QUEUE']}-prefetch-host-b")
        monkeypatch.setattr(prefetch, "_next_run", 0.0)
        assert prefetch.run_prefetch(on_host_b) is False
        assert len(queue.job_ids) == 1
    finally:
        queue.empty()


class FakeEvents:
    def __init__(self, events):
        self.events = list(events)

    def get(self, timeout):
        return self.events.pop(0) if self.events else END

    def close(self):
        pass


class FakePodman:
    """The Podman boundary of a round: its image list and its pulls."""

    names: list[str] = []
    pulls: list[tuple] = []
    failing: set[str] = set()

    def __init__(self, url):
        self.client = self
        self.api = self

    def get(self, path):
        assert path == "/images/json"
        names = self.names

        class Answer:
            def json(self):
                return [{"Names": names}]
        return Answer()

    def pull(self, ref, auth, tls_verify):
        FakePodman.pulls.append((ref, auth.username if auth else None, tls_verify))
        if ref.rsplit(":", 1)[1] in self.failing:
            return FakeEvents([{"stream": "Trying to pull\n"}, {"error": "manifest unknown\nmore"}])
        return FakeEvents([{"stream": "Copying blob\n"}])

    def close(self):
        pass


def test_a_round_pulls_what_this_host_lacks_with_the_push_credentials(on_host_b, api, monkeypatch):
    on_host_b.config.update(REGISTRY_USERNAME="builder", REGISTRY_PASSWORD="s3cret", REGISTRY_TLS_VERIFY=False)
    built(api, "demo", [(1, "host-a"), (2, "host-a"), (3, "host-a")], minutes_ago=5)
    monkeypatch.setattr(prefetch, "Podman", FakePodman)
    repository = f"{REGISTRY}/imagebuilder-cache"
    monkeypatch.setattr(FakePodman, "names", [f"{repository}:{key(1)}", f"{REGISTRY}/demo:latest"])
    monkeypatch.setattr(FakePodman, "pulls", [])
    monkeypatch.setattr(FakePodman, "failing", {key(3)})
    summary = prefetch.prefetch()
    assert summary.present == 1 and summary.pulled == [key(2)]
    assert summary.errors == [f"{repository}:{key(3)}: manifest unknown"]
    assert FakePodman.pulls == [(f"{repository}:{key(2)}", "builder", False),
                                (f"{repository}:{key(3)}", "builder", False)]


def test_a_cache_repository_of_another_registry_is_pulled_without_the_push_credentials(on_host_b, api,
                                                                                      monkeypatch):
    on_host_b.config.update(REGISTRY_USERNAME="builder", REGISTRY_PASSWORD="s3cret",
                            BUILD_CACHE_REPO="cache.example.com/team/cache")
    built(api, "demo", [(1, "host-a")], minutes_ago=5)
    monkeypatch.setattr(prefetch, "Podman", FakePodman)
    monkeypatch.setattr(FakePodman, "names", [])
    monkeypatch.setattr(FakePodman, "pulls", [])
    monkeypatch.setattr(FakePodman, "failing", set())
    assert prefetch.prefetch().pulled == [key(1)]
    assert FakePodman.pulls == [(f"cache.example.com/team/cache:{key(1)}", None, None)]
