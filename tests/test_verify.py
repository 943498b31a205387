"""The verify step's pure parts: reading the image's listings and matching the spec's lines
against them, as apt, pip and conda match. Tables of cases, no app, no Podman."""
import json

import pytest

from app.builds.verify import (
    Manifest,
    Package,
    VerificationFailed,
    check_requested,
    manifest_command,
    match_apt,
    match_conda,
    match_pip,
    parse_conda_list,
    parse_dpkg,
    parse_manifest,
    parse_marker_env,
    parse_os_release,
    parse_pip_check,
    parse_pip_list,
    split_sections,
)
from app.specs.validation import SpecInput

PY311 = {"implementation_name": "cpython", "implementation_version": "3.11.2", "os_name": "posix",
         "platform_machine": "x86_64", "platform_release": "6.1", "platform_system": "Linux",
         "platform_version": "#1", "python_full_version": "3.11.2", "platform_python_implementation": "CPython",
         "python_version": "3.11", "sys_platform": "linux"}

MANIFEST = Manifest(
    packages=[
        Package("apt", "jq", "1.6-2.1", arch="amd64"),
        Package("apt", "mawk", "1.3.4.20200120-3.1", arch="amd64", provides=("awk",)),
        Package("apt", "libc6", "2.36-9+deb12u4", arch="amd64"),
        Package("apt", "libc6", "2.36-9+deb12u4", arch="i386"),
        Package("apt", "tzdata", "1:2024a-0+deb12u1", arch="all"),
        Package("pip", "six", "1.17.0"),
        Package("pip", "requests", "2.32.3"),
        Package("pip", "zope-interface", "6.4"),
        Package("pip", "black", "24.1b1"),
        Package("conda", "numpy", "1.17.5", arch="linux-64", build="py38h95a1406_0", channel="conda-forge"),
        Package("conda", "python", "3.8.10", arch="linux-64", build="h49503c6_1_cpython", channel="conda-forge",
                build_number=1),
    ],
    marker_env=PY311,
)


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"', "Debian GNU/Linux 12 (bookworm)"),
    ("NAME=Alpine\nVERSION='3.19 edge'", "Alpine 3.19 edge"),  # no PRETTY_NAME
    ('PRETTY_NAME="Ubuntu \\"Noble\\" 24.04"', 'Ubuntu "Noble" 24.04'),
    ('PRETTY_NAME="unterminated', "unterminated"),
    ("PRETTY_NAME=\"a\x1b[31mb\"", "a[31mb"),  # no control characters reach a page
    ("PRETTY_NAME=" + "x" * 1000, "x" * 255),
    ("", None),
    ("garbage\n=\nlower=case", None),
])
def test_os_release(text, expected):
    assert parse_os_release(text) == expected


def test_dpkg_rows_keep_installed_packages_with_what_they_provide():
    text = "\n".join([
        "ii \tjq\t1.6-2.1\tamd64\t",
        "ii \tmawk\t1.3.4.20200120-3.1\tamd64\tawk, mawk-awk (= 1.3.4)",
        "rc \told-thing\t1.0\tamd64\t",  # removed, config files left
        "iU \thalf\t1.0\tamd64\t",  # unpacked only
        "ii \tlibc6\t2.36-9\tamd64\t",
        "ii \tlibc6\t2.36-9\ti386\t",  # multi-arch: both kept
        "ii \tNotAName\t1\tamd64\t",
        "ii \tnoversion\t\tamd64\t",
        "not a row at all",
        "ii \ttoo\tmany\ttab\tfields\there",
    ])
    assert parse_dpkg(text) == [
        Package("apt", "jq", "1.6-2.1", arch="amd64"),
        Package("apt", "mawk", "1.3.4.20200120-3.1", arch="amd64", provides=("awk", "mawk-awk")),
        Package("apt", "libc6", "2.36-9", arch="amd64"),
        Package("apt", "libc6", "2.36-9", arch="i386"),
    ]


@pytest.mark.parametrize("text, names, problem", [
    ('[{"name": "Six", "version": "1.16.0"}, {"name": "zope.interface", "version": "6.4"}]',
     [("six", "1.16.0"), ("zope-interface", "6.4")], None),
    ('WARNING: something\n[{"name": "six", "version": "1.16.0"}]\ntrailing', [("six", "1.16.0")], None),
    ('[{"name": "six"}, {"version": "1"}, "x", {"name": "a b", "version": "1"}, {"name": 3, "version": "1"}]',
     [], None),
    ('{"name": "six"}', [], "pip list printed no package list."),
    ("[{", [], "pip list printed a package list that is not valid JSON; its packages are unknown."),
    ("", [], "pip list printed no package list."),
])
def test_pip_list(text, names, problem):
    packages, found = parse_pip_list(text)
    assert [(p.name, p.version) for p in packages] == names and found == problem


@pytest.mark.parametrize("text, expected", [
    ("No broken requirements found.", []),
    ("", []),
    ("six 1.0 has requirement foo>=2, but you have foo 1.\nbar 2 requires baz, which is not installed.",
     ["six 1.0 has requirement foo>=2, but you have foo 1.", "bar 2 requires baz, which is not installed."]),
])
def test_pip_check(text, expected):
    assert parse_pip_check(text) == expected


def test_conda_list_leaves_pip_installs_to_pip():
    text = json.dumps([
        {"name": "numpy", "version": "1.17.5", "build_string": "py38h95a1406_0", "build_number": 0,
         "channel": "conda-forge", "platform": "linux-64"},
        {"name": "python", "version": "3.8.10", "build_string": "h_1", "build_number": 1,
         "base_url": "https://conda.anaconda.org/conda-forge", "channel": "https://conda.anaconda.org/conda-forge/linux-64",
         "platform": "linux-64"},
        {"name": "six", "version": "1.16.0", "build_string": "pypi_0", "channel": "pypi"},
        {"name": "broken"},
    ])
    packages, problem = parse_conda_list(text)
    assert problem is None
    assert [(p.name, p.version, p.build, p.channel, p.build_number) for p in packages] == [
        ("numpy", "1.17.5", "py38h95a1406_0", "conda-forge", 0),
        ("python", "3.8.10", "h_1", "conda-forge", 1),
    ]


@pytest.mark.parametrize("text, expected", [
    (json.dumps(PY311), PY311),
    ("noise\n" + json.dumps(PY311), PY311),
    ("[1]", None),
    ('{"python_version": 3}', None),
    ("", None),
])
def test_marker_environment(text, expected):
    assert parse_marker_env(text) == expected


def test_sections_are_found_by_the_nonce_only():
    nonce = "0123abcd"
    output = (f"@@imagebuilder-{nonce} os\nPRETTY_NAME=x\n@@imagebuilder-other dpkg\nfake\n"
              f"@@imagebuilder-{nonce} user\nroot\n@@imagebuilder-{nonce} os\nPRETTY_NAME=forged\n"
              f"@@imagebuilder-{nonce} end\n")
    assert split_sections(output, nonce) == {"os": "PRETTY_NAME=x\n@@imagebuilder-other dpkg\nfake",
                                             "user": "root", "end": ""}
    assert f"'@@imagebuilder-{nonce}'" in manifest_command(nonce)


def test_a_whole_listing_becomes_a_manifest():
    manifest = parse_manifest({
        "os": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"', "user": "app\n",
        "dpkg": "ii \tjq\t1.6-2.1\tamd64\t", "pip": '[{"name": "six", "version": "1.16.0"}]',
        "pip-check": "No broken requirements found.", "python": json.dumps(PY311), "conda": "not json", "end": "",
    })
    assert (manifest.os_name, manifest.user, manifest.marker_env) == ("Debian GNU/Linux 12 (bookworm)", "app", PY311)
    assert [(p.manager, p.name) for p in manifest.packages] == [("apt", "jq"), ("pip", "six")]
    assert manifest.warnings == ["conda list printed no package list."]


def test_a_listing_with_too_many_packages_is_refused(monkeypatch):
    from app.builds import verify

    monkeypatch.setattr(verify, "MAX_PACKAGES_PER_MANAGER", 2)
    dpkg = "\n".join(f"ii \tpkg{n}\t1\tamd64\t" for n in range(3))
    with pytest.raises(VerificationFailed, match="more than 2 apt packages"):
        parse_manifest({"dpkg": dpkg, "end": ""})


# -- matching -----------------------------------------------------------------------------


@pytest.mark.parametrize("line, package, problem", [
    ("jq", "jq", None),
    ("jq=1.6-2.1", "jq", None),
    ("jq=1.7.1-3", None, "installed jq 1.6-2.1 is not that version"),
    ("jq/bookworm-backports", "jq", None),
    ("awk", "mawk", None),  # a virtual package, by its provider
    ("awk=1.3.4.20200120-3.1", None, "dpkg lists no awk"),  # a version names a real package
    ("libc6=2.36-9+deb12u4", "libc6", None),
    ("tzdata=1:2024a-0+deb12u1", "tzdata", None),
    ("tzdata=2024a-0+deb12u1", None, "installed tzdata 1:2024a-0+deb12u1 is not that version"),
    ("curl", None, "dpkg lists no curl and no package that provides it"),
])
def test_apt_lines(line, package, problem):
    found, why = match_apt(line, MANIFEST)
    assert (found and found.name, why) == (package, problem)


def test_apt_epoch_zero_is_no_epoch():
    manifest = Manifest(packages=[Package("apt", "jq", "1.6-2.1")])
    assert match_apt("jq=0:1.6-2.1", manifest)[0] is not None


@pytest.mark.parametrize("line, package, problem", [
    ("six", "six", None),
    ("Six>=1.0", "six", None),
    ("six==1.16.0", None, "installed six 1.17.0 does not satisfy it"),
    ("six<2,>=1.17", "six", None),
    ("requests[socks]>=2.31", "requests", None),  # extras are ignored for the match
    ("zope.interface~=6.0", "zope-interface", None),  # PEP 503 names
    ("zope_interface", "zope-interface", None),
    ("black>=24.0b0", "black", None),  # pip installed a pre-release: it counts
    ('colorama; sys_platform == "win32"', None, None),  # a false marker: not required
    ('six; python_version >= "3"', "six", None),
    ('pywin32; python_version < "3"', None, None),
    ("numpy", None, "pip lists no numpy"),
])
def test_pip_lines(line, package, problem):
    found, why = match_pip(line, MANIFEST)
    assert (found and found.name, why) == (package, problem)


@pytest.mark.parametrize("line, package, problem", [
    ("numpy", "numpy", None),
    ("conda-forge::numpy 1.17.*", "numpy", None),
    ("numpy >=1.16,<1.18", "numpy", None),
    ("numpy 1.18.*", None, "installed numpy 1.17.5 from conda-forge (py38h95a1406_0) does not satisfy it"),
    ("numpy[build=py38*]", "numpy", None),
    ("numpy[build=py39*]", None, "installed numpy 1.17.5 from conda-forge (py38h95a1406_0) does not satisfy it"),
    ("defaults::numpy", None, "installed numpy 1.17.5 from conda-forge is not from channel defaults"),
    ("python[build_number=1]", "python", None),
    ("scipy", None, "conda lists no scipy"),
])
def test_conda_lines(line, package, problem):
    found, why = match_conda(line, MANIFEST)
    assert (found and found.name, why) == (package, problem)


def test_every_line_is_checked_and_numbered_as_the_spec_stores_it():
    spec = SpecInput(name="demo", base_image="debian", apt=["awk", "curl"], pip=["requests", "six==1.16.0"],
                     conda=["conda-forge::numpy 1.17.*"])
    checks = check_requested(spec, MANIFEST)
    assert [(c.field, c.number, c.package and c.package.name) for c in checks] == [
        ("apt", 1, "mawk"), ("apt", 2, None), ("pip", 1, "requests"), ("pip", 2, None), ("conda", 1, "numpy")]
    assert [c.problem for c in checks if c.problem] == [
        "apt line 2 'curl': dpkg lists no curl and no package that provides it",
        "pip line 2 'six==1.16.0': installed six 1.17.0 does not satisfy it",
    ]
