"""The shared layer cache's pure parts: what is sent to Podman, how its output is read,
which tags pruning deletes; and the runner with a fake Podman whose cache push is refused."""
from datetime import datetime, timedelta

import pytest

from app.builds.cache import (CacheLines, CacheStep, cache_params, credential_in, layer_name, parse_version,
                              stale_tags)
from app.extensions import db
from app.models import BuildJob, CacheLayer, JobStatus
from app.specs.containerfile import BuildOptions, render_containerfile
from app.specs.validation import SpecInput
from app.builds.runner import run_build
from test_runner_units import fake, finished, log_of, new_job, pushed  # noqa: F401  (fake is a fixture)

REPO = "reg.example.com/team/imagebuilder-cache"
KEY_A = "a" * 64
KEY_B = "b" * 64


@pytest.mark.parametrize("text, expected", [
    ("4.3.1", (4, 3, 1)),
    ("4.4.0-rc1", (4, 4, 0)),
    ("v5.2", (5, 2)),
    ("", ()),
    ("?", ()),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("mode, version, push, expected", [
    ("registry", "4.3.1", True, {"cachefrom": REPO, "cacheto": REPO}),
    ("registry", "4.2.0", True, {"cachefrom": REPO, "cacheto": REPO}),
    ("registry", "4.4.0", True, {"cachefrom": f'["{REPO}"]', "cacheto": f'["{REPO}"]'}),
    ("registry", "5.0.3", False, {"cachefrom": f'["{REPO}"]'}),
    ("registry", "4.3.1", False, {"cachefrom": REPO}),
    ("registry", "4.1.1", True, {}),
    ("local", "4.3.1", True, {}),
    ("off", "4.3.1", True, {"layers": False}),
])
def test_cache_params(mode, version, push, expected):
    assert cache_params(mode, version, REPO, push=push) == expected


def _instructions(containerfile):
    return [line for line in containerfile.replace("\\\n", " ").splitlines() if line]


def test_layer_names_of_the_rendered_steps():
    spec = SpecInput(name="demo", base_image="localhost/debian:bookworm", apt=["jq"], conda=["numpy"], pip=["six"])
    rendered = render_containerfile(spec, BuildOptions(ca_bundle=True, base_user="app"))
    assert [layer_name(step) for step in _instructions(rendered)] == [
        "FROM step", "USER step", "CA bundle layer", "APT layer", "Conda layer", "pip layer", "USER step"]


@pytest.mark.parametrize("text, why", [
    ("RUN pip install six", None),
    ("RUN PIP_INDEX_URL=https://mirror.example/simple pip install six", None),
    ("RUN PIP_INDEX_URL=https://robot:s3cret-token@mirror.example/simple pip", "user name and password"),
    ("RUN IMAGEBUILDER_PIP_INDEX_URL='https://robot:***@mirror.example/simple' pip", None),
    ("RUN pip install 'pkg @ https://robot:***x@mirror.example/pkg.whl'", "user name and password"),
    ("RUN echo hunter2-password", "carries a credential"),
])
def test_credential_in(text, why):
    reason = credential_in(text, lambda t: t.replace("hunter2-password", "***"))
    assert (reason is None) if why is None else (why in reason)


OUTPUT_FIRST_HOST = f"""STEP 1/4: FROM localhost/debian:bookworm
STEP 2/4: COPY imagebuilder-ca-bundle.pem /usr/local/share/imagebuilder/ca-bundle.pem
--> Using cache cf79ce80c0455f273493afdedafa874595a74a35a2c504c66978c38f8aa3477f
--> Pushing cache {REPO}:{KEY_A}
--> cf79ce80c04
STEP 3/4: RUN export DEBIAN_FRONTEND=noninteractive  && apt-get update  && apt-get install -y jq
Fetched 15.0 MB in 2s
--> Pushing cache {REPO}:{KEY_B}
--> 151185009ae
STEP 4/4: RUN PIP_BREAK_SYSTEM_PACKAGES=1 pip install --no-cache-dir 'six'
COMMIT x
--> d538123426f
"""

OUTPUT_SECOND_HOST = f"""STEP 1/3: FROM localhost/debian:bookworm
STEP 2/3: RUN export DEBIAN_FRONTEND=noninteractive  && apt-get update  && apt-get install -y jq
--> Cache pulled from remote {REPO}:{KEY_B}
--> Using cache 151185009aea1ff9253928b77a8fcf67bfb6db633d7fab70580a44b3d081aa7f
--> 151185009ae
STEP 3/3: RUN pip install 'six'
--> Pushing cache other.example/cache:{KEY_A}
"""


@pytest.mark.parametrize("output, chunk, found, steps", [
    (OUTPUT_FIRST_HOST, 7, [("CA bundle layer", KEY_A, "local"), ("APT layer", KEY_B, "built")],
     [("FROM step", None, "built"), ("CA bundle layer", KEY_A, "local"), ("APT layer", KEY_B, "built"),
      ("pip layer", None, "built")]),
    (OUTPUT_SECOND_HOST, 1000, [("APT layer", KEY_B, "shared")],
     [("FROM step", None, "built"), ("APT layer", KEY_B, "shared"), ("pip layer", None, "built")]),
    ("no steps at all\n--> Pushing cache x:y\n", 3, [], []),
])
def test_cache_lines_read_in_any_chunks(output, chunk, found, steps):
    lines = CacheLines(REPO)
    seen = []
    for start in range(0, len(output), chunk):
        seen += [(s.layer, s.key, s.source) for s in lines.feed(output[start:start + chunk])]
    assert seen == found
    assert [(s.layer, s.key, s.source) for s in lines.steps] == steps


NOW = datetime(2026, 12, 1, 12, 0)


@pytest.mark.parametrize("tags, last_used, protected, expected", [
    (["old", "new"], {"old": NOW - timedelta(days=20), "new": NOW - timedelta(days=1)}, set(), ["old"]),
    (["old"], {"old": NOW - timedelta(days=20)}, {"old"}, []),
    (["unknown", "new"], {"new": NOW}, set(), ["unknown"]),
    (["edge"], {"edge": NOW - timedelta(days=14)}, set(), ["edge"]),
    ([], {"gone": NOW - timedelta(days=30)}, set(), []),
])
def test_stale_tags(tags, last_used, protected, expected):
    assert stale_tags(tags, last_used, protected, NOW - timedelta(days=14)) == expected


def test_cache_step_as_dict():
    assert CacheStep("APT layer", KEY_B, "shared").as_dict() == {"layer": "APT layer", "key": KEY_B, "source": "shared"}


# -- the runner, with a fake Podman -----------------------------------------------------


def test_a_refused_cache_push_builds_again_without_it_and_succeeds_with_a_warning(app, fake):  # noqa: F811
    refused = (f"failed pushing cache to {{{{{{\"reg.example.com\" \"team/imagebuilder-cache\"}} \"{KEY_A}\"}}}}: "
               "unauthorized: authentication required")
    fake.build_attempts = [
        [{"stream": "STEP 1/2: FROM x\n"}, {"stream": "STEP 2/2: RUN pip install six\n"},
         {"stream": f"--> Pushing cache {REPO}:{KEY_A}\n"}, {"error": refused}],
        [{"stream": "STEP 1/2: FROM x\n"}, {"stream": "STEP 2/2: RUN pip install six\n"},
         {"stream": "--> Using cache " + "c" * 64 + "\n"}],
    ]
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    assert fake.build_params == [{"cachefrom": REPO, "cacheto": REPO}, {"cachefrom": REPO}]
    log_text = log_of(job_id)
    assert (f"Warning: the registry refused the shared cache's push to {REPO} (unauthorized: authentication "
            "required). The build goes on without pushing to the cache; the image is not affected.") in log_text


def test_a_layer_from_the_shared_cache_is_named_in_the_log_with_its_host_and_revision(app, fake):  # noqa: F811
    db.session.add(CacheLayer(cache_key=KEY_B, layer="APT layer", built_host="host-a", spec_name="demo", revision=4))
    db.session.commit()
    fake.build_events = [{"stream": line + "\n"} for line in OUTPUT_SECOND_HOST.replace(
        "other.example/cache", REPO).splitlines()]
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    text = log_of(job_id)
    assert "APT layer: from the shared cache, built on host-a for r4\n" in text
    assert text.index("Cache pulled from remote") < text.index("APT layer: from the shared cache")
    assert f"Shared cache: 1 layer(s) from the shared cache, 1 pushed to {REPO}." in text
    job = finished(job_id)
    assert job.cache_layers == [{"layer": "APT layer", "key": KEY_B, "source": "shared"},
                                {"layer": "pip layer", "key": KEY_A, "source": "built"}]
    pip_row = db.session.scalar(db.select(CacheLayer).where(CacheLayer.cache_key == KEY_A))
    assert (pip_row.layer, pip_row.spec_name, pip_row.revision) == ("pip layer", "demo", job.revision)


@pytest.mark.parametrize("mode, params", [("local", {}), ("off", {"layers": False})])
def test_local_and_off_send_no_remote_cache(app, fake, mode, params):  # noqa: F811
    app.config["BUILD_CACHE"] = mode
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    assert fake.build_params == [params]
    assert "Shared cache:" not in log_of(job_id)


def _build_auths(fake):  # noqa: F811
    return [call[2] for call in fake.calls if call[0] == "build"]


def test_a_local_base_build_carries_the_push_credentials_for_the_cache_repository(app, fake):  # noqa: F811
    """A localhost/ base needs no pull credential, but the cache's lookups and pushes in the
    registry do: without them each push was refused and nothing was ever shared."""
    job_id = new_job()  # base localhost/debian:bookworm, no pull secret
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    [auths] = _build_auths(fake)
    assert [(a.host, a.username) for a in auths] == [("reg.example.com", "robot")]
    assert fake.build_params == [{"cachefrom": REPO, "cacheto": REPO}]


@pytest.mark.parametrize("mode", ["local", "off"])
def test_without_the_shared_cache_a_local_base_build_carries_no_credential(app, fake, mode):  # noqa: F811
    app.config["BUILD_CACHE"] = mode
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    assert _build_auths(fake) == [[]]


def test_a_cache_repository_of_another_registry_gets_no_push_credential(app, fake):  # noqa: F811
    app.config["BUILD_CACHE_REPO"] = "other.example/cache"
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    assert _build_auths(fake) == [[]]


def test_several_registries_go_in_one_registry_config_header():
    import base64
    import json

    from app.builds.podman import RegistryAuth, registry_config_header

    header = registry_config_header([RegistryAuth("docker.io", "me", "p1"), RegistryAuth("reg.example.com", "robot", "p2")])
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "docker.io": {"username": "me", "password": "p1"}, "reg.example.com": {"username": "robot", "password": "p2"}}


@pytest.mark.parametrize("tagged, line, source", [
    (True, "APT layer: from the shared cache, built on host-a for r4 (already on this host)\n", "shared"),
    (False, None, "local"),  # built here: a push tags nothing in local storage
])
def test_a_local_hit_on_a_layer_pulled_from_the_cache_is_named_as_from_the_shared_cache(app, fake, tagged,  # noqa: F811
                                                                                       line, source):
    """A layer fetched ahead (app/builds/prefetch.py) is in local storage under its cache
    tag: Podman says "Using cache"; the key's row says which host built it."""
    app.config["BUILD_HOST_NAME"] = "host-b"
    db.session.add(CacheLayer(cache_key=KEY_B, layer="APT layer", built_host="host-a", spec_name="demo",
                              revision=4))
    db.session.commit()
    if tagged:
        fake.images[f"{REPO}:{KEY_B}"] = {"Id": "c" * 64}
    fake.build_events = [{"stream": text + "\n"} for text in (
        "STEP 1/2: RUN apt-get update && apt-get install -y jq", "--> Using cache " + "c" * 64,
        f"--> Pushing cache {REPO}:{KEY_B}", "STEP 2/2: RUN pip install six", f"--> Pushing cache {REPO}:{KEY_A}",
    )]
    job_id = new_job()
    pushed(job_id)
    assert run_build(job_id) == JobStatus.SUCCEEDED
    text = log_of(job_id)
    assert (line in text) if line else ("APT layer: from the shared cache" not in text)
    assert finished(job_id).cache_layers[0] == {"layer": "APT layer", "key": KEY_B, "source": source}
