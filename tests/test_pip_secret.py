"""pip index URLs with credentials: masked in the Containerfile, handed to the pip step as a
build secret (app/builds/pip_secret.py); URLs without credentials render as before."""
import configparser
import io
import json
import shlex
import tarfile
from pathlib import Path

import pytest

from app.builds.cache import credential_in
from app.builds.logwriter import LogWriter
from app.builds.pip_secret import CONTEXT_NAME, SECRET_ID, PipIndexSecret, has_credentials, mask, pip_conf
from app.builds.podman import build_context
from app.specs.containerfile import BuildOptions, render_containerfile
from app.specs.validation import validate_spec

GOLDEN = Path(__file__).parent / "golden"
INDEX = "https://robot:s3cret%2Ftoken@mirror.example:8443/simple"
EXTRA = ("https://plain.example/simple", "https://tok-only-1234567@other.example/simple")


def spec_of(**fields):
    result = validate_spec({"name": "demo", "base_image": "localhost/debian:bookworm", **fields})
    assert result.ok, result.errors
    return result.spec


def secret_of(index=INDEX, extra=EXTRA):
    return PipIndexSecret.from_config({"PIP_INDEX_URL": index, "PIP_EXTRA_INDEX_URLS": list(extra)})


def pip_run_words(containerfile):
    """The words of the pip RUN instruction (its line continuations joined)."""
    joined = containerfile.replace("\\\n", " ")
    line = next(line for line in joined.splitlines() if "pip install" in line)
    return shlex.split(line)


@pytest.mark.parametrize("url, masked", [
    ("https://user:pw-12345@mirror/simple", "https://user:***@mirror/simple"),
    ("https://robot:s3cret%2Ftoken@mirror.example:8443/simple", "https://robot:***@mirror.example:8443/simple"),
    ("https://only-a-token@mirror/simple", "https://***@mirror/simple"),
    ("https://user:@mirror/simple", "https://***@mirror/simple"),
    ("https://mirror/simple", "https://mirror/simple"),
    ("https://mirror/path@not-userinfo/simple", "https://mirror/path@not-userinfo/simple"),
])
def test_mask(url, masked):
    assert mask(url) == masked
    assert has_credentials(url) == (url != masked)


def test_urls_without_credentials_need_no_secret():
    assert PipIndexSecret.from_config({"PIP_INDEX_URL": None, "PIP_EXTRA_INDEX_URLS": []}) is None
    assert secret_of("https://mirror/simple", ("https://other/simple",)) is None


def test_without_credentials_the_containerfile_is_unchanged():
    """The runner renders exactly what it rendered before: the golden file of the
    plain-URL build options is the same bytes (tests/test_containerfile.py made it)."""
    options = BuildOptions(ca_bundle=True, pip_index_url="https://pypi.example.org/simple",
                           pip_extra_index_urls=("https://a.example.org/simple", "https://b.example.org/simple"),
                           base_user="app")
    apt = "# tools\ncurl\nca-certificates\ngit/bookworm-backports\nvim=2:9.0.1378-2\n"
    pip = 'NumPy>=1.26,<2\nrequests[socks]; python_version >= "3.8"\nflask\n'
    conda = "conda-forge::numpy==1.17*\npython 3.11.* *_cpython\nxz[build_number=3]\n"
    rendered = render_containerfile(spec_of(apt=apt, pip=pip, conda=conda), options)
    assert rendered.encode() == (GOLDEN / "all_three_build_options.Containerfile").read_bytes()
    assert "--mount" not in rendered and "PIP_CONFIG_FILE" not in rendered


def test_with_credentials_the_containerfile_mounts_the_secret_and_names_the_urls_masked():
    secret = secret_of()
    rendered = render_containerfile(spec_of(apt="jq", pip="six\n"), BuildOptions(ca_bundle=True, **secret.build_options()))
    for credential in ("s3cret", "s3cret%2Ftoken", "s3cret/token", "tok-only-1234567"):
        assert credential not in rendered
    words = pip_run_words(rendered)
    assert words[:3] == ["RUN", f"--mount=type=secret,id={SECRET_ID},required=true",
                         f"PIP_CONFIG_FILE=/run/secrets/{SECRET_ID}"]
    assert "PIP_NO_INPUT=1" in words
    assert "IMAGEBUILDER_PIP_INDEX_URL=https://robot:***@mirror.example:8443/simple" in words
    assert "IMAGEBUILDER_PIP_EXTRA_INDEX_URL=https://plain.example/simple https://***@other.example/simple" in words
    # pip's own variables would win over the file: none is set.
    assert not [w for w in words if w.startswith(("PIP_INDEX_URL=", "PIP_EXTRA_INDEX_URL="))]
    assert words[-4:] == ["pip", "install", "--no-cache-dir", "six"]
    # Only the pip step changes: everything before it is what a build without credentials has.
    plain = render_containerfile(spec_of(apt="jq", pip="six\n"), BuildOptions(ca_bundle=True))
    before, _, _ = rendered.partition("\nRUN --mount=")
    assert before and plain.startswith(before + "\nRUN PIP_BREAK_SYSTEM_PACKAGES=1 ")
    # The shared cache may take the other layers: nothing in it carries a password.
    assert credential_in(rendered, lambda text: text) is None


@pytest.mark.parametrize("options", [
    pytest.param(BuildOptions(pip_index_url=INDEX), id="password-without-secret"),
    pytest.param(BuildOptions(pip_index_url=INDEX, pip_config_secret=SECRET_ID), id="password-with-secret"),
    pytest.param(BuildOptions(pip_extra_index_urls=("https://token-only@x/simple",)), id="user-only"),
    pytest.param(BuildOptions(pip_index_url="https://u:***@x/simple"), id="masked-without-secret"),
    pytest.param(BuildOptions(pip_index_url="https://u:***@x/simple", pip_config_secret="a b"), id="bad-secret-id"),
])
def test_the_renderer_refuses_a_url_with_credentials_in_the_file(options):
    with pytest.raises(ValueError):
        render_containerfile(spec_of(pip="six"), options)


def test_pip_conf_holds_every_index_for_pip():
    text = pip_conf(INDEX, EXTRA)
    parser = configparser.RawConfigParser()  # as pip reads it
    parser.read_string(text)
    assert parser.get("global", "index-url") == INDEX
    assert parser.get("global", "extra-index-url").split() == list(EXTRA)
    assert "index-url" not in pip_conf(None, EXTRA).split("extra-index-url")[0]


def test_the_secret_rides_in_the_context_and_podman_is_told_its_path_there():
    secret = secret_of()
    context = secret.add_to_context(build_context("FROM x\n", {"imagebuilder-ca-bundle.pem": b"pem"}))
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == sorted(["Containerfile", "imagebuilder-ca-bundle.pem", CONTEXT_NAME])
        assert members[CONTEXT_NAME].mode == 0o600
        assert tar.extractfile(CONTEXT_NAME).read().decode() == pip_conf(INDEX, EXTRA)
        assert tar.extractfile("Containerfile").read() == b"FROM x\n"
    # A relative src: Podman 4.3 takes it from the context and moves it out before building.
    assert json.loads(secret.build_params()["secrets"]) == [f"id={SECRET_ID},src={CONTEXT_NAME}"]


def test_the_log_redacts_every_form_of_the_credentials():
    logw = LogWriter(lambda *a: None, max_bytes=10_000, flush_seconds=1)
    for form in secret_of().secret_forms():
        logw.add_secret(form)
    text = logw.redact(f"GET {INDEX} 401; password s3cret/token; token tok-only-1234567 robot:s3cret%2Ftoken")
    for credential in ("s3cret", "tok-only-1234567"):
        assert credential not in text
    assert "GET https://robot:*****@mirror.example:8443/simple 401" in text  # the rest stays readable


def test_a_url_with_a_line_break_is_refused_before_it_reaches_the_file():
    with pytest.raises(ValueError) as raised:
        secret_of("https://u:pw-123456@x/simple\n[global]", ())
    assert "pw-123456" not in str(raised.value)
