"""Tables of cases for the pure validation module: names, image references, APT, pip
and conda lines, line handling, duplicates, and that no content line is ever lost."""
import random
import re

import pytest
from rattler import MatchSpec

from app.specs.validation import (
    TEST_COMMAND_MAX_LENGTH,
    validate_test_command,
    LINE_MAX_LENGTH,
    FieldError,
    LineInvalid,
    iter_package_lines,
    normalize_apt,
    normalize_conda,
    normalize_pip,
    registry_host,
    validate_image_reference,
    validate_name,
    validate_package_lines,
    validate_spec,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


def case(*values, id):
    return pytest.param(*values, id=id)


# --- Names -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name",
    [
        case("demo", id="plain"),
        case("a", id="single-char"),
        case("py3.11-slim_gpu", id="each-separator-once"),
        case("a" * 128, id="length-128"),
        case("0day", id="starts-with-digit"),
    ],
)
def test_valid_names(name):
    assert validate_name(name) == []


@pytest.mark.parametrize(
    "name, reason",
    [
        case("", "required", id="empty"),
        case("a" * 129, "At most 128 characters (this one has 129)", id="length-129"),
        case("MyImage", "Did you mean 'myimage'?", id="uppercase-with-hint"),
        case("-demo", "no separator at the start or end", id="leading-dash"),
        case(".demo", "no separator at the start or end", id="leading-dot"),
        case("demo_", "no separator at the start or end", id="trailing-underscore"),
        case("de..mo", "no two in a row", id="doubled-dot"),
        case("de--mo", "no two in a row", id="doubled-dash"),
        case("de__mo", "no two in a row", id="doubled-underscore"),
        case("de.-mo", "no two in a row", id="mixed-separators"),
        case("démo", "(found 'é')", id="unicode-letter"),
        case("de mo", "(found ' ')", id="space"),
        case("de/mo", "(found '/')", id="slash"),
        case("demo\n", "(found '\\n')", id="trailing-newline"),
    ],
)
def test_invalid_names(name, reason):
    errors = validate_name(name)
    assert len(errors) == 1
    assert reason in errors[0]


# --- Image references --------------------------------------------------------------

@pytest.mark.parametrize(
    "ref, host",
    [
        case("debian", "docker.io", id="short-name"),
        case("debian:bookworm", "docker.io", id="short-name-tag"),
        case("library/debian:bookworm-slim", "docker.io", id="docker-hub-path"),
        case("docker.io/library/debian:12.5", "docker.io", id="docker-hub-fqdn"),
        case("registry.example.com:5000/team/app:v1.2_3", "registry.example.com:5000", id="registry-port"),
        case("localhost/debian:bookworm", "localhost", id="localhost"),
        case("localhost:5000/debian", "localhost:5000", id="localhost-port"),
        case("127.0.0.1:5000/debian:bookworm", "127.0.0.1:5000", id="ipv4-port"),
        case("[::1]:5000/debian:bookworm", "[::1]:5000", id="ipv6-port"),
        case("[2001:db8::1]/debian", "[2001:db8::1]", id="ipv6"),
        case(f"debian@{DIGEST}", "docker.io", id="digest"),
        case(f"quay.io/org/app:v1@{DIGEST}", "quay.io", id="tag-and-digest"),
        case("Registry.Example.com/app", "Registry.Example.com", id="uppercase-host"),
        case("ghcr.io/a/b/c/d:Latest", "ghcr.io", id="deep-path-uppercase-tag"),
        case("a__b/c-----d", "docker.io", id="path-separators-of-distribution"),
        case("x" * 255, "docker.io", id="name-255"),
    ],
)
def test_valid_image_references(ref, host):
    assert validate_image_reference(ref) == []
    assert registry_host(ref) == host


@pytest.mark.parametrize(
    "ref, reason",
    [
        case("", "required", id="empty"),
        case("debian\nRUN id", "line breaks", id="newline-injection"),
        case("debian\r\nRUN id", "line breaks", id="crlf-injection"),
        case("debian:bookworm\tx", "control", id="tab"),
        case("debian\x00", "control", id="nul"),
        case("debian bookworm", "spaces", id="space"),
        case("debïan", "non-ASCII", id="unicode"),
        case("debian:bookwörm", "non-ASCII", id="unicode-tag"),
        case(":bookworm", "Not a valid image reference", id="tag-only"),
        case("@" + DIGEST, "Not a valid image reference", id="digest-only"),
        case("Debian:bookworm", "did you mean 'debian:bookworm'?", id="uppercase-path"),
        case("quay.io/Org/App", "did you mean 'quay.io/org/app'?", id="uppercase-path-after-host"),
        case("debian:", "Not a valid image reference", id="empty-tag"),
        case("debian:" + "t" * 129, "Not a valid image reference", id="tag-too-long"),
        case("debian:-x", "Not a valid image reference", id="tag-leading-dash"),
        case("x" * 256, "longer than 255", id="name-256"),
        case("debian@sha256:abc", "64 lowercase hexadecimal", id="short-digest"),
        case("debian@sha256:" + "AB" * 32, "64 lowercase hexadecimal", id="uppercase-digest"),
        case("debian@md5:" + "a" * 32, "Unsupported digest algorithm 'md5'", id="md5-digest"),
        case("debian@" + "a" * 64, "Not a valid image reference", id="digest-without-algorithm"),
        case("-debian", "Not a valid image reference", id="leading-dash"),
        case("debian$(id)", "Not a valid image reference", id="command-substitution"),
        case("${BASE}", "Not a valid image reference", id="build-arg"),
        case("--platform=linux/amd64 debian", "spaces", id="from-option"),
        case("debian AS x", "spaces", id="from-stage"),
        case("registry:5000:6000/x", "Not a valid image reference", id="two-ports"),
        case("a//b", "Not a valid image reference", id="empty-component"),
        case("debian/", "Not a valid image reference", id="trailing-slash"),
    ],
)
def test_invalid_image_references(ref, reason):
    errors = validate_image_reference(ref)
    assert len(errors) == 1
    assert reason in errors[0]


# --- APT ---------------------------------------------------------------------------

VALID_APT = [
    case("curl", "curl", id="name"),
    case("g++", "g++", id="plus-in-name"),
    case("libstdc++6", "libstdc++6", id="plus-and-digit"),
    case("python3.11-venv", "python3.11-venv", id="dot-and-dash"),
    case("r2", "r2", id="two-chars"),
    case("curl=7.88.1-10+deb12u5", "curl=7.88.1-10+deb12u5", id="version-with-revision-plus"),
    case("tzdata=2024a-0+deb12u1", "tzdata=2024a-0+deb12u1", id="version-letters"),
    case("vim=2:9.0.1378-2", "vim=2:9.0.1378-2", id="epoch"),
    case("foo=1.0~rc1-1", "foo=1.0~rc1-1", id="tilde"),
    case("foo=1:2.3~b1+dfsg-4~bpo12+1", "foo=1:2.3~b1+dfsg-4~bpo12+1", id="epoch-tilde-plus"),
    case("curl/bookworm-backports", "curl/bookworm-backports", id="release"),
    case("curl/stable", "curl/stable", id="release-suite"),
]


@pytest.mark.parametrize("line, normalized", VALID_APT)
def test_valid_apt_lines(line, normalized):
    assert normalize_apt(line) == (normalized, normalized.split("=")[0].split("/")[0])


@pytest.mark.parametrize(
    "line, reason",
    [
        case("c", "not a Debian package name", id="single-char"),
        case("Curl", "lowercase: did you mean 'curl'?", id="uppercase-with-hint"),
        case("-oAPT::Update::Pre-Invoke::=id", "Options are not allowed", id="apt-option"),
        case("--allow-unauthenticated", "Options are not allowed", id="long-option"),
        case("curl;id", "'curl;id' is not a Debian package name", id="semicolon"),
        case("$(id)", "not a Debian package name", id="command-substitution"),
        case("`id`", "not a Debian package name", id="backticks"),
        case("curl wget", "spaces are not allowed", id="two-packages"),
        case("curl\twget", "Control characters", id="tab"),
        case("curl\x00", "Control characters", id="nul"),
        case("cürl", "Only ASCII", id="unicode"),
        case("'; id; '", "spaces are not allowed", id="quote-break-out"),
        case("a'b", "not a Debian package name", id="single-quote"),
        case(".curl", "not a Debian package name", id="leading-dot"),
        case("curl_x", "not a Debian package name", id="underscore"),
        case("libc6:amd64", "Architecture qualifiers", id="multiarch"),
        case("curl=", "A version is required", id="empty-version"),
        case("curl=abc", "'abc' is not a Debian version", id="version-not-starting-with-digit"),
        case("curl=1:2:3", "not a Debian version", id="two-epochs"),
        case("curl=1.0;id", "not a Debian version", id="version-injection"),
        case("curl=1.0*", "not a Debian version", id="version-glob"),
        case("curl/", "'' is not a release name", id="empty-release"),
        case("curl/Bookworm", "not a release name", id="uppercase-release"),
        case("curl/$(id)", "not a release name", id="release-injection"),
        case("x" * (LINE_MAX_LENGTH + 1), "too long", id="too-long"),
    ],
)
def test_invalid_apt_lines(line, reason):
    with pytest.raises(LineInvalid, match=None) as excinfo:
        normalize_apt(line)
    assert reason in str(excinfo.value)


# --- pip ---------------------------------------------------------------------------

VALID_PIP = [
    case("numpy", "numpy", "numpy", id="name"),
    case("NumPy>=1.0", "numpy>=1.0", "numpy", id="canonical-name"),
    case("Django_Rest.Framework", "django-rest-framework", "django-rest-framework", id="canonical-separators"),
    case("requests[Security,socks]>=2.8.1,==2.8.*", "requests[security,socks]==2.8.*,>=2.8.1", "requests", id="extras-and-specifiers"),
    case(
        'requests [security] >= 2.8.1, == 2.8.* ; python_version < "2.7"',
        'requests[security]==2.8.*,>=2.8.1; python_version < "2.7"',
        "requests",
        id="pep508-spaces-and-marker",
    ),
    case("numpy;python_version>'3'", 'numpy; python_version > "3"', "numpy", id="marker-single-quotes"),
    case("numpy (>=1.0)", "numpy>=1.0", "numpy", id="parenthesised-specifier"),
    case("numpy<2,>=1", "numpy<2,>=1", "numpy", id="specifiers-sorted"),
    case("numpy~=1.2", "numpy~=1.2", "numpy", id="compatible-release"),
    case("numpy==1.0+local", "numpy==1.0+local", "numpy", id="local-version"),
    case("numpy===1.0.post1", "numpy===1.0.post1", "numpy", id="arbitrary-equality"),
    case("numpy[]", "numpy", "numpy", id="empty-extras"),
    case(
        'x; platform_release == "$(id)"',
        'x; platform_release == "$(id)"',
        "x",
        id="marker-value-with-shell-syntax",
    ),
]


@pytest.mark.parametrize("line, normalized, key", VALID_PIP)
def test_valid_pip_lines(line, normalized, key):
    assert normalize_pip(line) == (normalized, key)


@pytest.mark.parametrize(
    "line, reason",
    [
        case("-r x", "-r is not allowed here; list the packages", id="requirements-file"),
        case("-c constraints.txt", "-c is not allowed", id="constraints-file"),
        case("-e .", "Editable installs", id="editable"),
        case("--index-url https://evil/simple", "--index-url is not allowed here; package indexes are set by the operator", id="index-url"),
        case("--extra-index-url http://x", "--extra-index-url is not allowed", id="extra-index-url"),
        case("--extra-index-url=http://x", "--extra-index-url is not allowed", id="extra-index-url-equals"),
        case("-i http://x", "-i is not allowed", id="short-index"),
        case("--trusted-host x", "--trusted-host is not allowed", id="trusted-host"),
        case("--pre", "options such as --pre", id="other-option"),
        case("x @ https://h/x.whl", "Direct URL references", id="direct-url"),
        case("x[a]@https://h", "Direct URL references", id="direct-url-with-extras"),
        case("x @ file:///etc/passwd", "Direct URL references", id="direct-file-url"),
        case("git+https://github.com/a/b.git", "URLs and paths are not allowed", id="vcs-url"),
        case("https://h/x-1.0-py3-none-any.whl", "URLs and paths are not allowed", id="wheel-url"),
        case("./pkg", "URLs and paths are not allowed", id="relative-path"),
        case("/tmp/pkg.tar.gz", "URLs and paths are not allowed", id="absolute-path"),
        case(".", "URLs and paths are not allowed", id="dot"),
        case("numpy[url=http://x]", "URLs and paths are not allowed", id="extra-looking-like-url-key"),
        case("numpy[url=x]", "Not a valid requirement (PEP 508)", id="extras-are-not-key-value"),
        case("numpy>=", "Not a valid requirement", id="missing-version"),
        case("numpy>=1.0 --hash=sha256:abc", "Not a valid requirement", id="per-requirement-option"),
        case("numpy>=1.0;", "Not a valid requirement", id="empty-marker"),
        case("numpy===$(id)", "Not a valid requirement", id="arbitrary-equality-injection"),
        case("curl;id", "Not a valid requirement", id="semicolon"),
        case("$(id)", "Not a valid requirement", id="command-substitution"),
        case("`id`", "Not a valid requirement", id="backticks"),
        case("'; id; '", "Not a valid requirement", id="quote-break-out"),
        case("a'b", "Not a valid requirement", id="single-quote"),
        case("numpy scipy", "Not a valid requirement", id="two-packages"),
        case("numpy\tscipy", "Control characters", id="tab"),
        case('x; platform_release == "a\u2028b"', "Only ASCII", id="unicode-line-separator-in-marker"),
        case("nümpy", "Only ASCII", id="unicode-name"),
    ],
)
def test_invalid_pip_lines(line, reason):
    with pytest.raises(LineInvalid) as excinfo:
        normalize_pip(line)
    assert reason in str(excinfo.value)


# --- conda -------------------------------------------------------------------------
# What py-rattler 0.28 really does; the lenient cases are forms conda itself reads.

VALID_CONDA = [
    case("numpy", "numpy", id="name"),
    case("NumPy", "numpy", id="name-lowercased"),
    case("numpy=1.2", "numpy 1.2.*", id="fuzzy-version"),
    case("numpy >=1.2,<2", "numpy >=1.2,<2", id="version-range"),
    case("numpy >=1.2 | <0.5", "numpy >=1.2|<0.5", id="version-or"),
    case("python 3.11.* *_cpython", "python 3.11.* *_cpython", id="build-glob"),
    case("conda-forge::numpy", "conda-forge::numpy", id="channel"),
    case("conda-forge::numpy==1.17*", "conda-forge::numpy 1.17.*", id="conda-style-star-lenient"),
    case("conda-forge::NumPy==1.17*", "conda-forge::numpy 1.17.*", id="lenient-and-lowercased"),
    case("numpy 1.17", "numpy ==1.17", id="bare-version-lenient"),
    case("numpy=1.2=py38", "numpy ==1.2 py38", id="name-version-build-lenient"),
    case("numpy 1.0rc1", "numpy ==1.0rc1", id="bare-prerelease-lenient"),
    case("numpy[version=1.2, build=py38]", "numpy ==1.2 py38", id="bracket-bare-version-lenient"),
    case(
        "conda-forge/linux-64::numpy 1.17.* py38_0",
        "conda-forge/linux-64::numpy 1.17.* py38_0",
        id="channel-subdir-version-build",
    ),
    case("conda-forge/label/dev::numpy", "conda-forge/label/dev::numpy", id="channel-label"),
    case("https://conda.anaconda.org/conda-forge::numpy", "conda-forge::numpy", id="default-host-url-is-named"),
    case("numpy[build_number=3]", 'numpy[build_number="==3"]', id="key-build-number"),
    case("numpy[build_number='>=3']", 'numpy[build_number=">=3"]', id="key-build-number-range"),
    case("numpy[version='>=1.2']", "numpy >=1.2", id="key-version"),
    case("numpy[subdir=linux-aarch64]", 'numpy[subdir="linux-aarch64"]', id="key-subdir"),
    case("numpy[channel=conda-forge]", "conda-forge::numpy", id="key-channel"),
    case("numpy[md5=" + "a" * 32 + "]", 'numpy[md5="' + "a" * 32 + '"]', id="key-md5"),
    case("numpy[license=\"a'b\"]", "numpy[license=\"a'b\"]", id="key-value-with-quote"),
]


@pytest.mark.parametrize("line, normalized", VALID_CONDA)
def test_valid_conda_lines(line, normalized):
    assert normalize_conda(line) == (normalized, "numpy" if "numpy" in normalized else "python")


@pytest.mark.parametrize(
    "line, reason",
    [
        case("numpy[url=http://x]", "Package URLs", id="url-key"),
        case("numpy[license=x, url=http://x]", "Package URLs", id="url-key-second"),
        case("https://h/ch/linux-64/numpy-1.0-0.tar.bz2", "Package URLs", id="package-file-url"),
        case("https://x.org/ch::numpy", "Channel URL https://x.org/ch/ is not allowed", id="url-channel"),
        case("http://x::numpy", "Channel URL http://x/ is not allowed", id="http-channel"),
        case("numpy[channel='https://x.org/ch']", "Channel URL https://x.org/ch/ is not allowed", id="url-channel-key"),
        case("s3://bucket/ch::numpy", "Channel URL s3://bucket/ch/ is not allowed", id="s3-channel"),
        case("https://user:secret@x.org/ch::numpy", "Channel URL https://***@x.org/ch/ is not", id="password-not-echoed"),
        case("./local::numpy", "Local channels", id="relative-path-channel"),
        case("/abs/ch::numpy", "Local channels", id="absolute-path-channel"),
        case("file:///tmp/ch::numpy", "Local channels", id="file-channel"),
        case("numpy[subdir=bogus]", "Unknown subdir 'bogus'", id="unknown-subdir"),
        case("numpy[subdir='../../x']", "Unknown subdir", id="path-subdir"),
        case("curl;id", "Not a valid conda MatchSpec: invalid package name 'curl;id'", id="semicolon"),
        case("$(id)", "Not a valid conda MatchSpec", id="command-substitution"),
        case("`id`", "Not a valid conda MatchSpec", id="backticks"),
        case("'; id; '", "Not a valid conda MatchSpec", id="quote-break-out"),
        case("a'b", "Not a valid conda MatchSpec", id="single-quote"),
        case("x @ https://h/x.whl", "Not a valid conda MatchSpec", id="pip-direct-url"),
        case("--extra-index-url http://x", "Options are not allowed", id="option"),
        case("-n base", "Options are not allowed", id="env-option"),
        case("num*py", "looks like a glob", id="name-glob"),
        case("conda-forge::", "missing package name", id="missing-name"),
        case("numpy[a]", "invalid bracket", id="bracket-without-key"),
        case("numpy[URL=http://x]", "invalid bracket key: URL", id="uppercase-key"),
        case("numpy[md5=abc]", "unable to parse hash digest", id="bad-md5"),
        case("numpy 1.0 *_$(id)", "the build string", id="lenient-would-accept-bad-build"),
        case('numpy[build="*$(id)"]', "'*$(id)' is not a build string", id="bracket-build-with-shell-syntax"),
        case("numpy 1.2 a,b", "'a,b' is not a build string", id="build-with-comma"),
        case("numpy 1.2 a|b", "'a|b' is not a build string", id="build-with-bar"),
        case('numpy[build=">=3"]', "'>=3' is not a build string", id="bracket-build-comparison"),
        case("numpy 1.2 [x]", "invalid bracket", id="third-word-brackets"),
        case('numpy[version=">=1", version="<2"]', "found multiple values for: version", id="lenient-would-drop-repeated-key"),
        case("numpy==1.17*=py38_0", "the build string '=py38_0' is not valid", id="lenient-would-drop-star"),
        case("numpy\t1.2", "Control characters", id="tab"),
        case("RUN id", "missing range specifier for 'id'", id="lenient-would-read-word-as-version"),
        case("numpy#[url=http://x]", "'#' may only start a comment", id="hash-without-space-would-be-cut"),
        case("c<y* ::numpy", "A channel name may only contain", id="junk-channel-name"),
        case("conda-forge:ns:numpy", "Namespaces", id="namespace"),
        case("FROM scratch", "missing range specifier for 'scratch'", id="instruction-like"),
    ],
)
def test_invalid_conda_lines(line, reason):
    with pytest.raises(LineInvalid) as excinfo:
        normalize_conda(line)
    assert reason in str(excinfo.value)


@pytest.mark.parametrize(
    "allowed",
    [
        case(("https://x.org/ch",), id="without-slash"),
        case(("https://x.org/ch/",), id="with-slash"),
        case(("https://other.org/c", "https://x.org/ch"), id="among-others"),
    ],
)
def test_url_channel_accepted_when_allowed(allowed):
    assert normalize_conda("https://x.org/ch::numpy", allowed) == ('numpy[channel="https://x.org/ch/"]', "numpy")
    with pytest.raises(LineInvalid, match="Channel URL https://x.org/ch2/ is not allowed"):
        normalize_conda("https://x.org/ch2::numpy", allowed)


def test_url_key_refused_even_with_allowed_channel():
    with pytest.raises(LineInvalid, match="Package URLs"):
        normalize_conda("numpy[url=https://x.org/ch/linux-64/numpy-1.0-0.tar.bz2]", ("https://x.org/ch",))


@pytest.mark.parametrize(
    "normalize, line",
    [pytest.param(normalize_apt, p.values[0], id=f"apt-{p.id}") for p in VALID_APT]
    + [pytest.param(normalize_pip, p.values[0], id=f"pip-{p.id}") for p in VALID_PIP]
    + [pytest.param(normalize_conda, p.values[0], id=f"conda-{p.id}") for p in VALID_CONDA],
)
def test_normalised_lines_are_accepted_unchanged(normalize, line):
    """Stored lines come back through validation on edit: they must not drift."""
    normalized, key = normalize(line.split(" #")[0])
    assert normalize(normalized) == (normalized, key)


# --- Lines, numbering and duplicates -----------------------------------------------

@pytest.mark.parametrize("field", ["apt", "pip", "conda"])
def test_inline_comments_need_a_space_before_the_hash(field):
    accepted, errors = validate_package_lines(field, "numpy  # pinned later\nscipy#not-a-comment")
    assert accepted == ["numpy"]
    assert [e.line for e in errors] == [2]


def test_line_numbers_count_blank_lines_and_comments_as_typed():
    text = "# tools\r\n\r\ncurl   # for downloads\rwget\n\n  # indented comment\n  git  \n"
    assert list(iter_package_lines(text)) == [(3, "curl"), (4, "wget"), (7, "git")]


@pytest.mark.parametrize(
    "text",
    [
        case("", id="empty"),
        case("\n\n  \n", id="blank-lines"),
        case("# only\n#comments\r\n", id="comments"),
        case(None, id="none"),
    ],
)
def test_nothing_to_install(text):
    assert validate_package_lines("apt", text) == ([], [])


@pytest.mark.parametrize(
    "field, text, key, first, second",
    [
        case("apt", "curl\nwget\n\ncurl=7.88.1-10", "curl", 1, 4, id="apt-name-and-pinned-version"),
        case("apt", "# c\r\ncurl/bookworm\r\ncurl", "curl", 2, 3, id="apt-release-crlf"),
        case("pip", "NumPy\n\n# x\nnumpy>=1", "numpy", 1, 4, id="pip-canonical-case"),
        case("pip", "django_rest\nDjango-Rest", "django-rest", 1, 2, id="pip-canonical-separators"),
        case("pip", "requests[socks]\nrequests", "requests", 1, 2, id="pip-extras"),
        case("conda", "numpy\rconda-forge::NumPy 1.2.*", "numpy", 1, 2, id="conda-channel-and-case-lone-cr"),
    ],
)
def test_duplicates_report_both_line_numbers(field, text, key, first, second):
    accepted, errors = validate_package_lines(field, text)
    assert len(accepted) == len(set(accepted))
    assert [(e.line, e.message) for e in errors] == [(second, f"{key!r} is already listed on line {first}.")]


def test_errors_carry_line_number_and_text():
    _, errors = validate_package_lines("apt", "curl\n\nCurl-X\n# c\nwget;id  # evil\n")
    assert errors == [
        FieldError("apt", "Debian package names are lowercase: did you mean 'curl-x'?", 3, "Curl-X"),
        FieldError("apt", "'wget;id' is not a Debian package name (lowercase letters, digits, '+', '-', '.'; "
                   "at least two characters, starting with a letter or digit).", 5, "wget;id"),
    ]
    assert errors[0].as_dict() == {"field": "apt", "line": 3, "message": errors[0].message}


def test_api_lists_are_one_entry_per_line():
    accepted, errors = validate_package_lines("apt", ["curl", "", "# comment", "wget\nRUN id", 7, "git"])
    assert accepted == ["curl", "git"]
    assert [(e.line, e.message) for e in errors] == [
        (4, "One package per entry; line breaks are not allowed."),
        (5, "Each entry must be a string."),
    ]


@pytest.mark.parametrize("value", [case({"curl": 1}, id="dict"), case(5, id="number")])
def test_package_field_of_wrong_type(value):
    accepted, errors = validate_package_lines("pip", value)
    assert accepted == []
    assert [(e.field, e.line, e.message) for e in errors] == [("pip", None, "Expected text or a list of strings.")]


MIXED_CORPUS = {
    "apt": [
        "curl", "wget=1.21.3-1+b2", "git/bookworm-backports", "Curl", "curl;id", "$(id)", "c",
        "-oAPT::Update::Pre-Invoke::=id", "vim=2:9.0", "vim", "a'b", "libc6:amd64", "g++", "x y",
        "curl  # again", "nano=", "tzdata=2024a-0+deb12u1",
    ],
    "pip": [
        "numpy", "NumPy>=1", "requests[socks]>=2", "-r x", "-e .", "--extra-index-url http://x",
        "x @ https://h/x.whl", "numpy[url=http://x]", 'flask; python_version >= "3.8"', "Flask",
        "git+https://h/r.git", "a'b", "django_rest", "pandas==2.*", "bad syntax here",
    ],
    "conda": [
        "numpy", "conda-forge::scipy==1.17*", "python 3.11.* *_cpython", "numpy[url=http://x]",
        "https://x.org/ch::pandas", "curl;id", "$(id)", "Numpy 1.2.*", "xz[build_number=3]",
        'zlib[version=">=1", version="<2"]', "openssl 3.*", "-c conda-forge", "pip",
    ],
}


@pytest.mark.parametrize("field", ["apt", "pip", "conda"])
def test_every_content_line_is_accepted_or_reported(field):
    """Property over shuffled mixes: accepted + errored == all content lines."""
    rng = random.Random(field)
    for _ in range(40):
        lines = rng.sample(MIXED_CORPUS[field], rng.randint(1, len(MIXED_CORPUS[field])))
        typed, content = [], {}
        for line in lines:
            for _ in range(rng.randint(0, 2)):
                typed.append(rng.choice(["", "   ", "# note", "  # indented note"]))
            typed.append(line)
            content[len(typed)] = line
        text = rng.choice(["\n", "\r\n", "\r"]).join(typed)

        accepted, errors = validate_package_lines(field, text)

        assert len(accepted) + len(errors) == len(content)
        errored = {e.line for e in errors}
        assert errored <= set(content)
        assert len(errored) == len(errors)
        for number in set(content) - errored:
            normalized, _ = {"apt": normalize_apt, "pip": normalize_pip, "conda": normalize_conda}[field](
                content[number].split(" #")[0].strip()
            )
            assert normalized in accepted


FUZZ_PIECES = [
    "numpy", "conda-forge", "::", "/", "linux-64", " ", "1.2", "*", "==", ">=", "<", "=", "[", "]",
    "version=", "build=", "channel=", "url=", ",", "'", '"', "py38_0", "|", "$(id)", ";", "`", "\\",
    "http://x", "https://conda.anaconda.org/", ":", "~", "!", "#", "@", "-", "python_version", "and",
]


@pytest.mark.parametrize("normalize", [normalize_apt, normalize_pip, normalize_conda], ids=["apt", "pip", "conda"])
def test_random_lines_are_refused_or_safe_and_stable(normalize):
    """Seeded fuzzing: only LineInvalid is raised; what passes is one safe, stable word."""
    rng = random.Random(normalize.__name__)
    for _ in range(3000):
        line = "".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(1, 8))).strip()
        try:
            normalized, key = normalize(line)
        except LineInvalid as exc:
            assert str(exc)
            continue
        assert normalized.isascii() and normalized.isprintable() and not normalized.startswith("-")
        assert normalize(normalized) == (normalized, key)
        if normalize is normalize_conda:
            # conda's own reading: the strict parser gives the line back unchanged, and
            # its build part is a build string, never a piece of syntax.
            spec = MatchSpec(normalized, strict=True)
            assert str(spec) == normalized
            assert spec.build is None or re.fullmatch(r"[A-Za-z0-9_*]+", str(spec.build)), normalized


# --- Whole specs ---------------------------------------------------------------------

def test_valid_spec_is_normalised_and_sorted():
    result = validate_spec(
        {
            "name": " demo ",
            "base_image": "localhost/debian:bookworm\n",
            "pull_secret": "",
            "apt": "wget\r\ncurl\r\n",
            "pip": ["Requests>=2", "NumPy"],
            "conda": "conda-forge::numpy==1.17*\n",
        }
    )
    assert result.ok, result.errors
    spec = result.spec
    assert (spec.name, spec.base_image, spec.pull_secret) == ("demo", "localhost/debian:bookworm", None)
    assert spec.apt == ["curl", "wget"]
    assert spec.pip == ["numpy", "requests>=2"]
    assert spec.conda == ["conda-forge::numpy 1.17.*"]


def test_invalid_spec_reports_every_field_and_keeps_nothing():
    result = validate_spec(
        {"name": "Bad Name", "base_image": "debian\nRUN id", "apt": "curl;id", "pip": "-e .", "conda": "$(id)"}
    )
    assert result.spec is None
    assert [e.field for e in result.errors] == ["name", "base_image", "apt", "pip", "conda"]
    assert [e.line for e in result.errors] == [None, None, 1, 1, 1]


def test_name_is_not_checked_on_edit():
    result = validate_spec({"name": "", "base_image": "debian"}, check_name=False)
    assert result.ok


@pytest.mark.parametrize(
    "data, field",
    [
        case({"name": 5, "base_image": "debian"}, "name", id="name-number"),
        case({"name": "demo", "base_image": ["debian"]}, "base_image", id="base-image-list"),
        case({"name": "demo", "base_image": "debian", "pull_secret": {"x": 1}}, "pull_secret", id="pull-secret-dict"),
    ],
)
def test_fields_of_wrong_type_are_errors_not_crashes(data, field):
    result = validate_spec(data)
    assert [(e.field, e.message) for e in result.errors] == [(field, "Expected a string.")]


# --- the test command ----------------------------------------------------------------


@pytest.mark.parametrize("command, reason", [
    ("python3 -c 'import numpy' && jq --version", None),
    ('test "$(id -un)" = app; echo ok | grep -q ok', None),  # any shell text: it runs only in the image
    ("echo '✓ ünïcode'", None),
    ("x" * TEST_COMMAND_MAX_LENGTH, None),
    ("x" * (TEST_COMMAND_MAX_LENGTH + 1), "At most 1000 characters (this one has 1001)."),
    ("echo a\nRUN id", "One line only: join commands with && or ;."),
    ("echo a\r\necho b", "One line only: join commands with && or ;."),
    ("echo\ta", "Only printable characters are allowed; found '\\t' (tabs and control characters included)."),
    ("echo \x1b[31m", "Only printable characters are allowed; found '\\x1b' (tabs and control characters included)."),
    ("echo \u2028x", "Only printable characters are allowed; found '\\u2028' (tabs and control characters included)."),
])
def test_test_command(command, reason):
    assert validate_test_command(command) == ([reason] if reason else [])


@pytest.mark.parametrize("value, expected", [
    ("  ./run-tests  ", "./run-tests"),
    ("", None),
    ("   ", None),
    (None, None),
])
def test_test_command_is_stripped_and_blank_means_none(value, expected):
    result = validate_spec({"name": "demo", "base_image": "debian", "test_command": value})
    assert result.ok and result.spec.test_command == expected


@pytest.mark.parametrize("value, message", [
    (["ls"], "Expected a string."),
    ("ls\nid", "One line only: join commands with && or ;."),
])
def test_a_bad_test_command_is_a_field_error(value, message):
    result = validate_spec({"name": "demo", "base_image": "debian", "test_command": value})
    assert [(e.field, e.line, e.message) for e in result.errors] == [("test_command", None, message)]
