"""The Containerfile renderer: golden files, stable bytes and hashes, the injection
corpus, and the inputs it refuses."""
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from app.specs.containerfile import (
    CA_BUNDLE_CONTEXT_NAME,
    CA_BUNDLE_PATH,
    BuildOptions,
    input_hash,
    render_containerfile,
)
from app.specs.validation import SpecInput, validate_spec

GOLDEN = Path(__file__).parent / "golden"
BASE = "localhost/debian:bookworm"
APT = "# tools\ncurl\nca-certificates\ngit/bookworm-backports\nvim=2:9.0.1378-2\n"
PIP = 'NumPy>=1.26,<2\nrequests[socks]; python_version >= "3.8"\nflask\n'
CONDA = "conda-forge::numpy==1.17*\npython 3.11.* *_cpython\nxz[build_number=3]\n"
BUILD_OPTIONS = BuildOptions(
    ca_bundle=True,
    pip_index_url="https://pypi.example.org/simple",
    pip_extra_index_urls=("https://a.example.org/simple", "https://b.example.org/simple"),
    base_user="app",
)


def spec_of(**fields):
    result = validate_spec({"name": "demo", "base_image": BASE, **fields})
    assert result.ok, result.errors
    return result.spec


GOLDEN_CASES = {
    "apt_only": (dict(apt=APT), None),
    "pip_only": (dict(pip=PIP), None),
    "conda_only": (dict(conda=CONDA), None),
    "all_three": (dict(apt=APT, pip=PIP, conda=CONDA), None),
    "all_three_build_options": (dict(apt=APT, pip=PIP, conda=CONDA), BUILD_OPTIONS),
    "base_user_root": (dict(apt=APT, pip=PIP, conda=CONDA), BuildOptions(ca_bundle=True, base_user="root")),
}


@pytest.mark.parametrize("case_name", sorted(GOLDEN_CASES))
def test_golden_containerfiles(case_name):
    """UPDATE_GOLDEN=1 rewrites the files; review the diff before committing it."""
    fields, options = GOLDEN_CASES[case_name]
    rendered = render_containerfile(spec_of(**fields), options)
    path = GOLDEN / f"{case_name}.Containerfile"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(rendered.encode("utf-8"))
    assert rendered.encode("utf-8") == path.read_bytes()


def instructions(containerfile):
    """Logical instructions: continuation lines joined the way the parser joins them."""
    result, pending = [], ""
    for line in containerfile.split("\n")[:-1]:
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        result.append(pending + line)
        pending = ""
    assert pending == "", "the last instruction must not end in a continuation"
    return result


def run_commands(containerfile):
    """The shell command of each RUN, as the build hands it to /bin/sh -c."""
    return [i[len("RUN "):] for i in instructions(containerfile) if i.startswith("RUN ")]


def run_words(containerfile):
    """The shell words of each RUN, as a POSIX shell would split them."""
    return [shlex.split(command) for command in run_commands(containerfile)]


def installed_words(containerfile):
    """{tool: the words it installs}, read back from the rendered RUN lines."""
    found = {}
    for words in run_words(containerfile):
        if "apt-get" in words:
            start = words.index("--no-install-recommends") + 1
            found["apt"] = words[start : words.index("&&", start)]
        elif "$tool" in words:
            start = words.index("$@") + 1
            found["conda"] = words[start : words.index("&&", start)]
        else:
            found["pip"] = words[words.index("--no-cache-dir") + 1 :]
    return found


def test_layers_in_cache_order_with_their_commands():
    rendered = render_containerfile(spec_of(apt=APT, pip=PIP, conda=CONDA))
    steps = instructions(rendered)
    assert steps[0] == f"FROM {BASE}"
    assert [s.split()[0] for s in steps] == ["FROM", "RUN", "RUN", "RUN"]
    apt, conda, pip = steps[1:]
    assert "DEBIAN_FRONTEND=noninteractive" in apt
    assert "apt-get update" in apt and "apt-get install -y --no-install-recommends" in apt
    assert apt.endswith("rm -rf /var/lib/apt/lists/*")
    assert '"$tool" install -y "$@"' in conda and conda.endswith('"$tool" clean --all -y')
    assert "PIP_BREAK_SYSTEM_PACKAGES=1" in pip and "pip install --no-cache-dir" in pip
    assert installed_words(rendered) == {
        "apt": ["ca-certificates", "curl", "git/bookworm-backports", "vim=2:9.0.1378-2"],
        "conda": ["conda-forge::numpy 1.17.*", "python 3.11.* *_cpython", 'xz[build_number="==3"]'],
        "pip": ["flask", "numpy<2,>=1.26", 'requests[socks]; python_version >= "3.8"'],
    }


@pytest.mark.parametrize("field", ["apt", "pip", "conda"])
def test_empty_lists_render_no_layer(field):
    rendered = render_containerfile(spec_of(**{field: ""}))
    assert rendered == f"FROM {BASE}\n"


def test_build_options_switch_user_copy_the_ca_and_point_tools_at_it():
    rendered = render_containerfile(spec_of(apt=APT, pip=PIP, conda=CONDA), BUILD_OPTIONS)
    steps = instructions(rendered)
    assert steps[:3] == [f"FROM {BASE}", "USER root", f"COPY {CA_BUNDLE_CONTEXT_NAME} {CA_BUNDLE_PATH}"]
    assert steps[-1] == "USER app"
    conda, pip = run_words(rendered)[1:]
    assert f"CONDA_SSL_VERIFY={CA_BUNDLE_PATH}" in conda and f"MAMBA_SSL_VERIFY={CA_BUNDLE_PATH}" in conda
    assert pip[:6] == [
        "PIP_BREAK_SYSTEM_PACKAGES=1",
        "PIP_ROOT_USER_ACTION=ignore",
        "PIP_DISABLE_PIP_VERSION_CHECK=1",
        f"PIP_CERT={CA_BUNDLE_PATH}",
        "PIP_INDEX_URL=https://pypi.example.org/simple",
        "PIP_EXTRA_INDEX_URL=https://a.example.org/simple https://b.example.org/simple",
    ]


@pytest.mark.parametrize(
    "user",
    [
        pytest.param(None, id="unknown"),
        pytest.param("", id="empty-means-root"),
        pytest.param("root", id="root"),
        pytest.param("0", id="uid-0"),
        pytest.param("root:root", id="root-group"),
        pytest.param("0:0", id="uid-gid-0"),
    ],
)
def test_root_base_user_needs_no_user_lines(user):
    rendered = render_containerfile(spec_of(apt=APT), BuildOptions(base_user=user))
    assert "USER" not in rendered


@pytest.mark.parametrize(
    "user",
    [
        pytest.param("app", id="name"),
        pytest.param("1000", id="uid"),
        pytest.param("1000:1000", id="uid-gid"),
        pytest.param("mamba_user:users", id="name-group"),
    ],
)
def test_non_root_base_user_is_restored(user):
    steps = instructions(render_containerfile(spec_of(pip=PIP), BuildOptions(base_user=user)))
    assert steps[1] == "USER root" and steps[-1] == f"USER {user}"


@pytest.mark.parametrize(
    "user",
    [
        pytest.param("app\nRUN id", id="newline"),
        pytest.param("$USER", id="variable"),
        pytest.param("app user", id="space"),
        pytest.param("-1", id="leading-dash"),
        pytest.param("a:b:c", id="two-colons"),
        pytest.param("${X:-root}", id="default-expansion"),
        pytest.param("ü", id="unicode"),
        pytest.param("x" * 33, id="too-long"),
    ],
)
def test_base_user_that_is_not_a_plain_name_is_refused(user):
    with pytest.raises(ValueError, match="base user"):
        render_containerfile(spec_of(apt=APT), BuildOptions(base_user=user))


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(BuildOptions(pip_index_url="https://x/simple\nRUN id"), id="index-newline"),
        pytest.param(BuildOptions(pip_index_url="ftp://x/simple"), id="index-not-http"),
        pytest.param(BuildOptions(pip_extra_index_urls=("https://a", "https://b c")), id="extra-with-space"),
    ],
)
def test_index_urls_that_could_break_the_run_line_are_refused(options):
    with pytest.raises(ValueError, match="pip index URL"):
        render_containerfile(spec_of(pip=PIP), options)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(SpecInput("demo", "debian\nRUN id"), id="base-image-newline"),
        pytest.param(SpecInput("demo", "debian AS x"), id="base-image-space"),
        pytest.param(SpecInput("demo", BASE, apt=["curl\nRUN id"]), id="apt-newline"),
        pytest.param(SpecInput("demo", BASE, pip=["-e ."]), id="pip-option"),
        pytest.param(SpecInput("demo", BASE, conda=["numpy\r"]), id="conda-carriage-return"),
        pytest.param(SpecInput("demo", BASE, apt=["x\u2028y"]), id="unicode-line-separator"),
        pytest.param(SpecInput("demo", BASE, apt=[""]), id="empty-entry"),
    ],
)
def test_unvalidated_input_is_refused_by_the_renderer_too(spec):
    with pytest.raises(ValueError):
        render_containerfile(spec)


# --- The RUN lines under a real POSIX shell ------------------------------------------

# Records its name, its arguments and PIP_INDEX_URL, separated by \037, one call per \036.
STUB = """#!/bin/sh
{ printf '%s\\037' "${0##*/}" "$@"; printf 'PIP_INDEX_URL=%s\\037' "${PIP_INDEX_URL:-}"; printf '\\036'; } >> "$STUB_LOG"
"""


def run_under_sh(command, tmp_path, tools, env=None):
    """Run a RUN command with /bin/sh -c (as the build does) against recording stubs.

    PATH holds only the stubs, so nothing real is installed or removed; returns the
    process and the argv each stub was called with.
    """
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for tool in tools:
        (stubs / tool).write_text(STUB)
        (stubs / tool).chmod(0o755)
    log = tmp_path / "calls"
    log.write_text("")
    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        env={"PATH": str(stubs), "STUB_LOG": str(log), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )
    calls = [c.split("\037")[:-1] for c in log.read_text().split("\036")[:-1]]
    return proc, calls


def test_rendered_run_lines_give_each_tool_exactly_the_packages(tmp_path):
    rendered = render_containerfile(spec_of(apt=APT, pip=PIP, conda=CONDA), BUILD_OPTIONS)
    apt, conda, pip = run_commands(rendered)
    spec = spec_of(apt=APT, pip=PIP, conda=CONDA)
    tools = ["apt-get", "rm", "micromamba", "conda", "pip"]

    proc, calls = run_under_sh(apt, tmp_path, tools)
    assert proc.returncode == 0, proc.stderr
    assert [c[:-1] for c in calls[:3]] == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *spec.apt],
        ["apt-get", "clean"],
    ]
    rm = calls[3][:-1]
    assert rm[:2] == ["rm", "-rf"] and all(p.startswith("/var/lib/apt/lists/") for p in rm[2:])

    proc, calls = run_under_sh(conda, tmp_path, tools)
    assert proc.returncode == 0, proc.stderr
    assert [c[:-1] for c in calls] == [
        ["micromamba", "install", "-y", "-n", "base", *spec.conda],
        ["micromamba", "clean", "--all", "-y"],
    ]

    proc, calls = run_under_sh(pip, tmp_path, tools)
    assert proc.returncode == 0, proc.stderr
    assert calls == [["pip", "install", "--no-cache-dir", *spec.pip, "PIP_INDEX_URL=https://pypi.example.org/simple"]]


@pytest.mark.parametrize(
    "tools, env, expected",
    [
        pytest.param(["conda"], {}, ["conda", "install", "-y", "-n", "base"], id="conda"),
        pytest.param(["mamba", "conda"], {}, ["mamba", "install", "-y", "-n", "base"], id="mamba-before-conda"),
        pytest.param(
            ["micromamba", "mamba"], {"CONDA_PREFIX": "/opt/env one"},
            ["micromamba", "install", "-y", "-p", "/opt/env one"], id="active-environment",
        ),
    ],
)
def test_conda_layer_uses_the_tool_the_image_has(tmp_path, tools, env, expected):
    rendered = render_containerfile(spec_of(conda="numpy"))
    proc, calls = run_under_sh(run_commands(rendered)[0], tmp_path, tools, env)
    assert proc.returncode == 0, proc.stderr
    assert [c[:-1] for c in calls] == [[*expected, "numpy"], [expected[0], "clean", "--all", "-y"]]


def test_conda_layer_fails_clearly_without_a_conda_tool(tmp_path):
    rendered = render_containerfile(spec_of(conda="numpy"))
    proc, calls = run_under_sh(run_commands(rendered)[0], tmp_path, [])
    assert proc.returncode == 1 and calls == []
    assert "no micromamba, mamba or conda in the base image" in proc.stderr


# --- Same inputs, same bytes --------------------------------------------------------

def test_same_set_in_another_order_and_case_renders_the_same_bytes_and_hash():
    first = render_containerfile(spec_of(apt=APT, pip=PIP, conda=CONDA))
    second = render_containerfile(
        spec_of(
            apt="vim=2:9.0.1378-2\r\n\r\ngit/bookworm-backports\r\nca-certificates\r\ncurl  # again\r\n",
            pip=["Flask", "requests [SOCKS] ; python_version>='3.8'", "numpy<2,>=1.26"],
            conda="XZ[build_number=3]\n# c\nPython 3.11.* *_cpython\nconda-forge::NumPy==1.17*",
        )
    )
    assert first == second
    assert input_hash(first) == input_hash(second)
    assert len(input_hash(first)) == 8 and int(input_hash(first), 16) >= 0


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(dict(apt="curl\nca-certificates\n"), id="fewer-apt"),
        pytest.param(dict(apt=APT + "wget\n"), id="more-apt"),
        pytest.param(dict(apt=APT.replace("vim=2:9.0.1378-2", "vim")), id="unpinned"),
        pytest.param(dict(apt=APT, pip="flask\n"), id="added-pip"),
        pytest.param(dict(apt=APT, conda="flask\n"), id="same-name-other-tool"),
        pytest.param(dict(apt=APT, base_image="localhost/debian:trixie"), id="other-base"),
        pytest.param(dict(apt=APT, test_command="jq --version"), id="test-command"),
    ],
)
def test_different_inputs_give_different_hashes(other):
    baseline = input_hash(render_containerfile(spec_of(apt=APT)))
    assert input_hash(render_containerfile(spec_of(**other))) != baseline


# --- Injection corpus ----------------------------------------------------------------

INJECTION_CORPUS = [
    "curl;id",
    "$(id)",
    "`id`",
    "curl\nRUN id",
    "curl\r\nRUN id",
    "curl\rRUN id",
    "-oAPT::Update::Pre-Invoke::=id",
    "--extra-index-url http://x",
    "x @ https://h/x.whl",
    "numpy[url=http://x]",
    "'; id; '",
    "a'b",
    "curl && id",
    "curl | id",
    "curl > /etc/passwd",
    "curl \\",
    "numpy; os_name == \"'; id; '\"",
    "numpy; platform_release == \"$(id)`id`\"",
    "x; platform_release == 'a\"b'",
    'numpy[license="a\'b;$(id)"]',
    'numpy[build="*$(id)*"]',
    "python 3.11.* *_cpython",
    "numpy\x00",
    "numpy\x1b[31m",
    "numpy\u2028RUN id",
    "numpy\u0085RUN id",
    "FROM scratch",
    "USER root",
    "# escape=`",
    "numpy #\nRUN id",
]


@pytest.mark.parametrize("field", ["apt", "pip", "conda"])
@pytest.mark.parametrize("as_list", [False, True], ids=["textarea", "api-list"])
@pytest.mark.parametrize("payload", INJECTION_CORPUS, ids=[repr(p) for p in INJECTION_CORPUS])
def test_injection_is_refused_or_rendered_as_one_quoted_word(field, as_list, payload, tmp_path):
    value = [payload] if as_list else payload
    result = validate_spec({"name": "demo", "base_image": BASE, field: value})

    if not result.ok:
        # Refused with a reason on a line; a spec with any error renders nothing at all.
        assert result.spec is None
        assert all(e.field == field and e.line and e.message.strip() for e in result.errors)
        return

    # Accepted means a grammar read it as packages (conda reads "RUN id" as package
    # "run", version "id"; '# escape=`' is a comment): each must stay one word.
    accepted = getattr(result.spec, field)
    rendered = render_containerfile(result.spec, BUILD_OPTIONS)
    # Only '\n' breaks lines, and exactly as many as for harmless words: none is the input's.
    assert rendered.count("\n") == len(rendered.splitlines())
    placeholders = SpecInput("demo", BASE, **{field: ["aa"] * len(accepted)})
    assert rendered.count("\n") == render_containerfile(placeholders, BUILD_OPTIONS).count("\n")
    for step in instructions(rendered):
        assert step.split(" ", 1)[0] in {"FROM", "USER", "COPY", "RUN"}
    assert installed_words(rendered).get(field, []) == accepted
    # And /bin/sh agrees: the tool gets exactly those words, and nothing else runs.
    calls = []
    for command in run_commands(rendered):
        proc, more = run_under_sh(command, tmp_path, ["apt-get", "rm", "micromamba", "pip", "id", "curl"])
        assert proc.returncode == 0, proc.stderr
        calls += more
    assert {c[0] for c in calls} <= {"apt-get", "rm", "micromamba", "pip"}
    installs = [c[:-1] for c in calls if c[1] == "install"]
    assert [c[-len(accepted):] for c in installs] == ([accepted] if accepted else [])


def test_corpus_exercises_both_outcomes():
    """Some payloads pass a grammar (and are then quoted); most are refused."""
    outcomes = {"accepted": 0, "refused": 0}
    for payload in INJECTION_CORPUS:
        for field in ("apt", "pip", "conda"):
            ok = validate_spec({"name": "demo", "base_image": BASE, field: [payload]}).ok
            outcomes["accepted" if ok else "refused"] += 1
    assert outcomes["accepted"] >= 5 and outcomes["refused"] >= 60


@pytest.mark.parametrize(
    "field, line, reason",
    [
        pytest.param("apt", "-oAPT::Update::Pre-Invoke::=id", "Options are not allowed", id="apt-option"),
        pytest.param("pip", "--extra-index-url http://x", "--extra-index-url is not allowed", id="pip-index"),
        pytest.param("pip", "x @ https://h/x.whl", "Direct URL references", id="pip-direct-url"),
        pytest.param("conda", "numpy[url=http://x]", "Package URLs", id="conda-url-key"),
        pytest.param("apt", "curl;id", "not a Debian package name", id="apt-semicolon"),
        pytest.param("pip", "$(id)", "Not a valid requirement", id="pip-substitution"),
        pytest.param("conda", "`id`", "Not a valid conda MatchSpec", id="conda-backticks"),
    ],
)
def test_named_corpus_payloads_are_refused_with_their_reason(field, line, reason):
    result = validate_spec({"name": "demo", "base_image": BASE, field: line})
    assert [e.line for e in result.errors] == [1]
    assert reason in result.errors[0].message


def test_the_test_command_ends_the_file_as_a_comment_after_the_last_instruction():
    tested = render_containerfile(spec_of(apt=APT, test_command="jq --version # and more \\"),
                                  BuildOptions(base_user="app"))
    assert tested.endswith("USER app\n# Test command, run in the built image before the push:\n"
                           "# jq --version # and more \\\n")
    # Comments are not instructions: the layers are those of the spec without the test.
    instructions = [line for line in tested.splitlines() if not line.startswith("#")]
    assert instructions == render_containerfile(spec_of(apt=APT), BuildOptions(base_user="app")).splitlines()


@pytest.mark.parametrize("command", ["ls\nRUN id", "ls\r", "ls\x00"])
def test_an_unvalidated_test_command_is_refused_by_the_renderer(command):
    spec = spec_of(apt=APT)
    spec.test_command = command
    with pytest.raises(ValueError, match="test command"):
        render_containerfile(spec)
