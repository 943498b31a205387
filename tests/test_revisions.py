"""Revisions, the pure parts: compare's diffs, pin's rewritten lines, the SBOM's package URLs."""
from types import SimpleNamespace

import pytest

from app.revisions.compare import diff_containerfiles, diff_packages, diff_spec, parse_revision
from app.revisions.pin import PinRefused, pin_base, pin_lines
from app.revisions.sbom import deb_vendor, package_url
from app.specs.validation import validate_spec

# --- compare: spec fields -------------------------------------------------------------------


@pytest.mark.parametrize(
    "before, after, expected",
    [
        ({"pip": ["six"]}, {"pip": ["six"]}, []),
        ({"pip": ["six==1.16.0"]}, {"pip": ["six==1.17.0"]},
         [{"field": "pip", "from": ["six==1.16.0"], "to": ["six==1.17.0"]}]),
        ({"apt": []}, {"apt": ["jq"]}, [{"field": "apt", "from": [], "to": ["jq"]}]),
        # a field missing from an old snapshot counts as empty, not as a change
        ({}, {"conda": [], "test_command": ""}, []),
        ({"base_image": "debian:12"}, {"base_image": "debian:13"},
         [{"field": "base_image", "from": "debian:12", "to": "debian:13"}]),
        ({"pull_secret": None}, {"pull_secret": "hub"}, [{"field": "pull_secret", "from": None, "to": "hub"}]),
        ({"test_command": "true"}, {}, [{"field": "test_command", "from": "true", "to": None}]),
        # the form's order, whatever the snapshot's order
        ({"conda": ["a"], "apt": ["b"]}, {"conda": ["c"], "apt": ["d"]},
         [{"field": "apt", "from": ["b"], "to": ["d"]}, {"field": "conda", "from": ["a"], "to": ["c"]}]),
    ],
)
def test_diff_spec(before, after, expected):
    assert diff_spec(before, after) == expected


def test_diff_containerfiles_is_a_unified_diff_or_empty():
    assert diff_containerfiles("FROM a\nRUN x\n", "FROM a\nRUN x\n", "r1", "r2") == ""
    text = diff_containerfiles("FROM a\nRUN x\n", "FROM a\nRUN y\n", "r1/Containerfile", "r2/Containerfile")
    assert text.splitlines() == [
        "--- r1/Containerfile", "+++ r2/Containerfile", "@@ -1,2 +1,2 @@", " FROM a", "-RUN x", "+RUN y",
    ]
    assert text.endswith("\n")


# --- compare: packages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "before, after, expected",
    [
        ([], [], {"added": [], "removed": [], "changed": []}),
        ([("pip", "six", "1.16.0")], [("pip", "six", "1.16.0")], {"added": [], "removed": [], "changed": []}),
        ([("pip", "six", "1.16.0")], [("pip", "six", "1.17.0")],
         {"added": [], "removed": [], "changed": [{"manager": "pip", "name": "six", "from": "1.16.0", "to": "1.17.0"}]}),
        ([("apt", "jq", "1.6")], [("apt", "jq", "1.6"), ("apt", "libonig5", "6.9")],
         {"added": [{"manager": "apt", "name": "libonig5", "version": "6.9"}], "removed": [], "changed": []}),
        ([("conda", "numpy", "1.26")], [],
         {"added": [], "removed": [{"manager": "conda", "name": "numpy", "version": "1.26"}], "changed": []}),
        # the same name under two managers is two packages
        ([("apt", "six", "1.16.0-4")], [("pip", "six", "1.16.0")],
         {"added": [{"manager": "pip", "name": "six", "version": "1.16.0"}],
          "removed": [{"manager": "apt", "name": "six", "version": "1.16.0-4"}], "changed": []}),
        # two architectures of one dpkg package: their versions together
        ([("apt", "libc6", "2.36"), ("apt", "libc6", "2.36")], [("apt", "libc6", "2.36"), ("apt", "libc6", "2.37")],
         {"added": [], "removed": [], "changed": [{"manager": "apt", "name": "libc6", "from": "2.36", "to": "2.36, 2.37"}]}),
    ],
)
def test_diff_packages(before, after, expected):
    assert diff_packages(before, after) == expected


def test_diff_packages_lists_apt_then_pip_then_conda_by_name():
    after = [("conda", "b", "1"), ("pip", "Zed", "1"), ("pip", "alpha", "1"), ("apt", "z", "1")]
    assert [(p["manager"], p["name"]) for p in diff_packages([], after)["added"]] == [
        ("apt", "z"), ("pip", "alpha"), ("pip", "Zed"), ("conda", "b"),
    ]


@pytest.mark.parametrize(
    "raw, expected",
    [("1", 1), (" 7 ", 7), ("2147483647", 2147483647)],
)
def test_parse_revision_accepts_database_integers(raw, expected):
    assert parse_revision(raw) == expected


@pytest.mark.parametrize(
    "raw, reason",
    [
        (None, "required"), ("", "required"), ("abc", "integer"), ("1.5", "integer"), ("0", "between"),
        ("-3", "between"), ("2147483648", "between"), ("99999999999999999999", "between"),
    ],
)
def test_parse_revision_refuses_junk_and_out_of_range(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_revision(raw)


# --- pin ------------------------------------------------------------------------------------

MANIFEST = [
    ("apt", "jq", "1.6-2.1"),
    ("apt", "mawk", "1.3.4.20200120-3.1"),
    ("apt", "curl", "7.88.1-10+deb12u5"),
    ("pip", "six", "1.16.0"),
    ("pip", "Requests", "2.31.0"),
    ("pip", "typing_extensions", "4.9.0"),
    ("conda", "numpy", "1.26.4"),
    ("conda", "python", "3.11.8"),
]


@pytest.mark.parametrize(
    "field, line, pinned",
    [
        ("apt", "jq", "jq=1.6-2.1"),
        ("apt", "jq=1.6-2.1", "jq=1.6-2.1"),
        ("apt", "curl/bookworm-backports", "curl=7.88.1-10+deb12u5"),
        ("pip", "six", "six==1.16.0"),
        ("pip", "six>=1.10,<2", "six==1.16.0"),
        # the manifest's spelling of a name does not matter (PEP 503)
        ("pip", "requests[socks,security]>=2", "requests[security,socks]==2.31.0"),
        ("pip", "typing-extensions; python_version >= \"3.8\"", "typing-extensions==4.9.0; python_version >= \"3.8\""),
        ("conda", "numpy", "numpy ==1.26.4"),
        ("conda", "conda-forge::numpy 1.26.*", "conda-forge::numpy ==1.26.4"),
        ("conda", "conda-forge/label/dev::python >=3.10", "conda-forge/label/dev::python ==3.11.8"),
    ],
)
def test_pin_lines_pins_each_line_to_the_installed_version(field, line, pinned):
    lines, notes = pin_lines({field: [line]}, MANIFEST)
    assert lines[field] == [pinned] and notes == []
    # What pin writes is a line the spec accepts as it is.
    result = validate_spec({"name": "demo", "base_image": "debian:bookworm", field: [pinned]})
    assert result.ok, result.errors
    assert getattr(result.spec, field) == [pinned]


@pytest.mark.parametrize(
    "field, line, reason",
    [
        ("apt", "awk", "virtual package"),
        ("pip", "colorama; sys_platform == \"win32\"", "marker is false"),
        ("pip", "absent", "pip lists no such distribution"),
        ("conda", "scipy", "conda lists no package 'scipy'"),
    ],
)
def test_pin_lines_keeps_a_line_the_manifest_cannot_pin_and_says_why(field, line, reason):
    lines, notes = pin_lines({field: [line]}, MANIFEST)
    assert lines[field] == [line]
    assert [(n.field, n.line) for n in notes] == [(field, line)] and reason in notes[0].reason


def test_pin_lines_keeps_the_order_and_every_field():
    lines, _ = pin_lines({"apt": ["jq", "awk"], "pip": ["six"]}, MANIFEST)
    assert lines == {"apt": ["jq=1.6-2.1", "awk"], "pip": ["six==1.16.0"], "conda": []}


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "base, pinned",
    [
        ("debian:bookworm", f"debian:bookworm@{DIGEST}"),
        ("127.0.0.1:5000/base/debian:12", f"127.0.0.1:5000/base/debian:12@{DIGEST}"),
        (f"debian:bookworm@sha256:{'b' * 64}", f"debian:bookworm@{DIGEST}"),
    ],
)
def test_pin_base_names_the_base_by_its_registry_digest(base, pinned):
    assert pin_base(base, DIGEST) == pinned
    assert validate_spec({"name": "demo", "base_image": pinned}).ok


@pytest.mark.parametrize(
    "base, digest, reason",
    [
        ("localhost/debian:bookworm", DIGEST, "local image"),
        ("debian:bookworm", None, "No registry digest"),
        ("debian:bookworm", "", "No registry digest"),
    ],
)
def test_pin_base_refuses_a_base_without_a_registry_digest(base, digest, reason):
    with pytest.raises(PinRefused, match=reason):
        pin_base(base, digest)


# --- SBOM package URLs ----------------------------------------------------------------------


def package(manager, name, version, **extra):
    return SimpleNamespace(manager=manager, name=name, version=version, arch=extra.get("arch"),
                           build=extra.get("build"), channel=extra.get("channel"))


@pytest.mark.parametrize(
    "row, os_name, purl",
    [
        (package("apt", "jq", "1.6-2.1", arch="amd64"), "Debian GNU/Linux 12 (bookworm)", "pkg:deb/debian/jq@1.6-2.1?arch=amd64"),
        (package("apt", "libc6", "2.39-0ubuntu8", arch="amd64"), "Ubuntu 24.04 LTS", "pkg:deb/ubuntu/libc6@2.39-0ubuntu8?arch=amd64"),
        (package("apt", "tzdata", "2024a-0+deb12u1", arch="all"), None, "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all"),
        (package("pip", "six", "1.16.0"), None, "pkg:pypi/six@1.16.0"),
        (package("pip", "Typing_Extensions", "4.9.0"), None, "pkg:pypi/typing-extensions@4.9.0"),
        (package("conda", "numpy", "1.26.4", build="py311h64a7726_0", channel="conda-forge"), None,
         "pkg:conda/numpy@1.26.4?build=py311h64a7726_0&channel=conda-forge"),
    ],
)
def test_package_url(row, os_name, purl):
    assert package_url(row, os_name).to_string() == purl


@pytest.mark.parametrize(
    "os_name, vendor",
    [("Debian GNU/Linux 12 (bookworm)", "debian"), ("Ubuntu 22.04.4 LTS", "ubuntu"), ("", "debian"), (None, "debian")],
)
def test_deb_vendor(os_name, vendor):
    assert deb_vendor(os_name) == vendor
