"""The verify step, between build and push: what is inside the built image, and does it work.

``verify_image`` runs the built image in throwaway Podman containers (entrypoint
``/bin/sh``, the image's own user and environment, no credential, no mount):

1. one container lists the installed-package manifest: dpkg (``dpkg-query -W``, with
   Provides so a virtual package resolves), pip (``-m pip list --format=json`` of the
   interpreter whose ``pip`` the build installed with, and ``pip check``, whose complaints
   are a warning in the log), conda (``<tool> list --json`` of the environment the build
   installs into), the OS's PRETTY_NAME and the user. The rows go into ``JobPackage`` and
   the summary onto the job (``packages_count``, ``os_name``, ``image_user``);
2. every apt, pip and conda line of the spec must be satisfied by that manifest, matched
   as the package managers match (pure functions: ``check_requested``); a miss fails the
   job before anything is pushed, naming the field, the line and what was found;
3. the spec's test command, if any, runs with ``/bin/sh -c`` and its output streams into
   the build log; a non-zero exit or running past TEST_TIMEOUT fails the job.

Whatever happens, each container is removed; a cancel request or BUILD_TIMEOUT stops the
step like any other (the runner's ``check_stop``).
"""
from __future__ import annotations

import json
import re
import secrets
import shlex
import time
from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion
from rattler import BuildString, MatchSpec, PackageRecord
from sqlalchemy import delete, insert, update

from ..extensions import db
from ..i18n import stored as said
from ..models import BuildJob, JobPackage
from .podman import END

POLL_SECONDS = 0.2
MANIFEST_TIMEOUT = 120
MANIFEST_MAX_BYTES = 32 * 1024 * 1024
MAX_PACKAGES_PER_MANAGER = 50_000
TEXT_MAX = 255  # JobPackage's name and version columns; os_name and image_user too
ARCH_MAX = 64
WARNING_LINES_MAX = 20
_DPKG_NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*")
_PRINTABLE_RE = re.compile(r"[^\x00-\x1f\x7f]+")
_CONDA_HOST = "https://conda.anaconda.org/"

# The marker environment of the image's own Python (PEP 508), printed as JSON.
_MARKER_ENV_PY = """import json, os, platform, sys
i = sys.implementation
v = "{0.major}.{0.minor}.{0.micro}".format(i.version)
if i.version.releaselevel != "final":
    v += i.version.releaselevel[0] + str(i.version.serial)
print(json.dumps({"implementation_name": i.name, "implementation_version": v, "os_name": os.name,
  "platform_machine": platform.machine(), "platform_release": platform.release(),
  "platform_system": platform.system(), "platform_version": platform.version(),
  "python_full_version": platform.python_version(),
  "platform_python_implementation": platform.python_implementation(),
  "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform}))
"""

# Sections of one listing, each after a marker line holding a nonce the image cannot know.
# The interpreter is the one on the first line of `pip` (what the build's pip install
# ran), and pip check runs beside pip list; the conda target is the build's own:
# $CONDA_PREFIX, else base.
_MANIFEST_SCRIPT = """m='@@imagebuilder-{nonce}'
section() {{ printf '\\n%s %s\\n' "$m" "$1"; }}  # on a line of its own, whatever came before
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
section os; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
section user; id -un 2>/dev/null || id -u 2>/dev/null
if command -v dpkg-query >/dev/null 2>&1; then
  section dpkg
  dpkg-query -W -f '${{db:Status-Abbrev}}\\t${{Package}}\\t${{Version}}\\t${{Architecture}}\\t${{Provides}}\\n' 2>/dev/null
fi
py=python3
if p=$(command -v pip 2>/dev/null); then
  IFS= read -r first < "$p" 2>/dev/null && case "$first" in '#!/'*python*) py=${{first#??}};; esac
fi
chk=$(mktemp 2>/dev/null) && {{ $py -m pip check >"$chk" 2>&1 & }}
if list=$($py -m pip list --format=json 2>/dev/null); then
  section pip; printf '%s\\n' "$list"
  section pip-check
  if [ -n "$chk" ]; then wait; cat "$chk"; else $py -m pip check 2>&1; fi
fi
wait; [ -z "$chk" ] || rm -f "$chk"
if $py -c '' >/dev/null 2>&1; then section python; $py -c {marker_env} 2>/dev/null; fi
if tool=$(command -v micromamba || command -v mamba || command -v conda); then
  section conda
  if [ -n "${{CONDA_PREFIX:-}}" ]; then "$tool" list --json -p "$CONDA_PREFIX"; else "$tool" list --json -n base; fi 2>/dev/null
fi
section end
"""


class VerificationFailed(Exception):
    """The built image is not what the spec asks for; the message is the job's error."""


@dataclass(frozen=True)
class Package:
    manager: str  # apt | pip | conda
    name: str
    version: str
    arch: str | None = None
    build: str | None = None
    channel: str | None = None
    provides: tuple[str, ...] = ()  # dpkg: the virtual packages it provides
    build_number: int = 0  # conda: for matching only


@dataclass
class Manifest:
    packages: list[Package] = field(default_factory=list)
    os_name: str | None = None
    user: str | None = None
    pip_problems: list[str] = field(default_factory=list)  # pip check's complaints
    marker_env: dict | None = None  # the image's Python, for PEP 508 markers
    warnings: list[str] = field(default_factory=list)  # listings that could not be read

    def of(self, manager: str) -> list[Package]:
        return [p for p in self.packages if p.manager == manager]


@dataclass(frozen=True)
class LineCheck:
    """One spec line against the manifest: the package that satisfies it, or why not."""

    field: str
    number: int
    line: str
    package: Package | None = None
    problem: str | None = None


# -- the step -----------------------------------------------------------------------------


def verify_image(run, podman, target: str, spec) -> None:
    """Step 4 of a build (`run` is the runner's BuildRun): the manifest, the requested
    lines, the test command. Raises VerificationFailed; nothing is pushed then."""
    started = time.monotonic()
    run.announce(4, f"Verifying {target}", said.VERIFYING)
    info = podman.inspect_image(target) or {}
    manifest = collect_manifest(run, podman, target)
    manifest.user = manifest.user or (info.get("Config") or {}).get("User") or "root"
    checks = check_requested(spec, manifest)
    store_manifest(run.job_id, manifest, checks)
    _log_manifest(run.logw, manifest, info.get("Size"))
    problems = [c.problem for c in checks if c.problem]
    for problem in problems:
        run.logw.line(problem)
    if problems:
        raise VerificationFailed(_summary(problems))
    satisfied = sum(1 for c in checks if c.package)
    if checks:
        run.logw.line(f"All {satisfied} requested package(s) are installed as the spec asks.")
    if spec.test_command:
        run_test_command(run, podman, target, spec.test_command)
    run.logw.line(f"Verified in {time.monotonic() - started:.1f} s.")


def collect_manifest(run, podman, image: str) -> Manifest:
    nonce = secrets.token_hex(8)
    output = []
    code = run_in_container(run, podman, image, manifest_command(nonce), on_output=output.append, stderr=False,
                            timeout=MANIFEST_TIMEOUT, max_bytes=MANIFEST_MAX_BYTES,
                            what=said.LISTING_TIMED_OUT % {"seconds": MANIFEST_TIMEOUT})
    text = "".join(output)
    sections = split_sections(text, nonce)
    if "end" not in sections:
        template = said.LISTING_STOPPED if text.strip() else said.LISTING_STOPPED_SILENT
        raise VerificationFailed(template % {"code": code})
    return parse_manifest(sections)


def run_test_command(run, podman, image: str, command: str) -> None:
    timeout = float(run.config.get("TEST_TIMEOUT", 300))
    run.logw.line(f"Running the test command: {command}")
    run.logw.flush()
    last = [""]

    def show(text):
        run.logw.write(text)
        last[0] = text

    code = run_in_container(run, podman, image, command, on_output=show, stderr=True, timeout=timeout,
                            max_bytes=None,
                            what=said.TEST_TIMED_OUT % {"seconds": f"{timeout:g}"})
    if last[0] and not last[0].endswith("\n"):
        run.logw.write("\n")
    if code != 0:
        raise VerificationFailed(said.TEST_FAILED % {"code": code})
    run.logw.line("The test command passed (exit 0).")


def run_in_container(run, podman, image: str, command: str, *, on_output, stderr: bool, timeout: float,
                     max_bytes: int | None, what: str) -> int:
    """Run `command` in a throwaway container of `image` until it ends: its exit code.
    Output goes to `on_output` as printed; a cancel or BUILD_TIMEOUT raises BuildStopped
    (run.check_stop), running past `timeout` raises VerificationFailed(`what`), and the
    container is removed in every case."""
    container = podman.run_in_image(image, command, stderr=stderr, max_bytes=max_bytes)
    deadline = time.monotonic() + timeout
    try:
        while True:
            run.check_stop()
            if time.monotonic() > deadline:
                raise VerificationFailed(what)
            piece = container.get(POLL_SECONDS)
            if piece is END:
                break
            if piece is None:
                run.logw.tick()
            else:
                on_output(piece)
        if container.overflowed:
            raise VerificationFailed(said.LISTING_TOO_BIG % {"bytes": max_bytes})
        return container.exit_code()
    finally:
        container.remove()


def store_manifest(job_id: int, manifest: Manifest, checks: list[LineCheck]) -> None:
    """The manifest's rows (replacing any of an earlier attempt) and the job's summary."""
    requested = {(c.package.manager, c.package.name, c.package.arch) for c in checks if c.package}
    rows = [
        {"job_id": job_id, "manager": p.manager, "name": p.name, "version": p.version, "arch": p.arch,
         "build": p.build, "channel": p.channel, "requested": (p.manager, p.name, p.arch) in requested}
        for p in manifest.packages
    ]
    db.session.execute(delete(JobPackage).where(JobPackage.job_id == job_id))
    if rows:
        db.session.execute(insert(JobPackage), rows)
    db.session.execute(
        update(BuildJob).where(BuildJob.id == job_id)
        .values(packages_count=len(rows), os_name=manifest.os_name, image_user=manifest.user)
    )
    db.session.commit()


def _log_manifest(logw, manifest: Manifest, size_bytes) -> None:
    counts = ", ".join(f"{len(manifest.of(m))} {m}" for m in ("apt", "pip", "conda"))
    size = f"{size_bytes / 1_000_000:.1f} MB" if isinstance(size_bytes, int) else "size unknown"
    logw.line(f"Image: {manifest.os_name or 'OS unknown'}; user {manifest.user}; {size}; packages: {counts}.")
    for warning in manifest.warnings:
        logw.line(f"Warning: {warning}")
    if manifest.pip_problems:
        logw.line("Warning: pip check reports broken requirements (the build goes on):")
        for problem in manifest.pip_problems[:WARNING_LINES_MAX]:
            logw.line(f"  {problem}")
        if len(manifest.pip_problems) > WARNING_LINES_MAX:
            logw.line(f"  ... and {len(manifest.pip_problems) - WARNING_LINES_MAX} more")


def _summary(problems: list[str]) -> str:
    head = "; ".join(problems[:3])
    if len(problems) > 3:
        return said.IMAGE_LACKS_MORE % {"problems": head, "more": len(problems) - 3}
    return said.IMAGE_LACKS % {"problems": head}


# -- the listing and its parsing (pure) ---------------------------------------------------


def manifest_command(nonce: str) -> str:
    return _MANIFEST_SCRIPT.format(nonce=nonce, marker_env=shlex.quote(_MARKER_ENV_PY))


def split_sections(output: str, nonce: str) -> dict[str, str]:
    """The listing's sections by name; a section named twice keeps its first text."""
    marker = f"@@imagebuilder-{nonce} "
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith(marker):
            name = line[len(marker):].strip()
            current = None if name in sections else name
            if current is not None:
                sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def parse_manifest(sections: dict[str, str]) -> Manifest:
    user_lines = sections.get("user", "").strip().splitlines()
    manifest = Manifest(os_name=parse_os_release(sections.get("os", "")),
                        user=_clean(user_lines[-1]) if user_lines else None)
    manifest.packages += parse_dpkg(sections.get("dpkg", ""))
    if "pip" in sections:
        pip, problem = parse_pip_list(sections["pip"])
        manifest.packages += pip
        if problem:
            manifest.warnings.append(problem)
        manifest.pip_problems = parse_pip_check(sections.get("pip-check", ""))
    if "python" in sections:
        manifest.marker_env = parse_marker_env(sections["python"])
    if "conda" in sections:
        conda, problem = parse_conda_list(sections["conda"])
        manifest.packages += conda
        if problem:
            manifest.warnings.append(problem)
    for manager in ("apt", "pip", "conda"):
        if len(manifest.of(manager)) > MAX_PACKAGES_PER_MANAGER:
            raise VerificationFailed(said.TOO_MANY_PACKAGES % {"limit": MAX_PACKAGES_PER_MANAGER, "manager": manager})
    return manifest


def _clean(value, limit: int = TEXT_MAX) -> str | None:
    """A value fit for a column and a page: no control characters, bounded; None if empty."""
    if not isinstance(value, str):
        return None
    value = "".join(_PRINTABLE_RE.findall(value)).strip()
    return value[:limit] or None


def parse_os_release(text: str) -> str | None:
    """PRETTY_NAME of an os-release file (else NAME and VERSION); None when it says neither."""
    values = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z0-9_]+", key.strip()):
            continue
        try:
            words = shlex.split(raw, comments=False)
        except ValueError:
            words = [raw.strip().strip("\"'")]
        values[key.strip()] = " ".join(words)
    pretty = values.get("PRETTY_NAME") or " ".join(v for v in (values.get("NAME"), values.get("VERSION")) if v)
    return _clean(pretty)


def parse_dpkg(text: str) -> list[Package]:
    """Installed packages of ``dpkg-query -W -f 'status\\tname\\tversion\\tarch\\tprovides'``;
    packages not fully installed (removed, config-files only, half-installed) and lines
    that are not such a row are skipped."""
    packages = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 5:
            continue
        status, name, version, arch, provides = (part.strip() for part in parts)
        if status[1:2] != "i" or not _DPKG_NAME_RE.fullmatch(name) or len(name) > TEXT_MAX:
            continue
        version, arch = _clean(version), _clean(arch, ARCH_MAX)
        if not version:
            continue
        packages[(name, arch)] = Package("apt", name, version, arch=arch, provides=_dpkg_provides(provides))
    return list(packages.values())


def _dpkg_provides(field_text: str) -> tuple[str, ...]:
    """``awk, mawk-awk (= 1.3.4)`` -> ('awk', 'mawk-awk')."""
    names = []
    for item in field_text.split(","):
        name = item.strip().split(" ", 1)[0].split("(", 1)[0].split(":", 1)[0]
        if _DPKG_NAME_RE.fullmatch(name):
            names.append(name)
    return tuple(names)


def _json_list(text: str, what: str) -> tuple[list, str | None]:
    """The JSON array a listing printed (tools may print a line of their own first)."""
    start = text.find("[")
    if start < 0:
        return [], f"{what} printed no package list."
    try:
        value, _end = json.JSONDecoder().raw_decode(text, start)  # what follows it is ignored
    except ValueError:
        return [], f"{what} printed a package list that is not valid JSON; its packages are unknown."
    return [item for item in value if isinstance(item, dict)], None


def parse_pip_list(text: str) -> tuple[list[Package], str | None]:
    """``pip list --format=json``: (packages by PEP 503 name, a problem or None)."""
    items, problem = _json_list(text, "pip list")
    packages = {}
    for item in items:
        name, version = item.get("name"), _clean(item.get("version"))
        if not isinstance(name, str) or not version or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            continue
        canonical = canonicalize_name(name)
        if len(canonical) <= TEXT_MAX:
            packages[canonical] = Package("pip", canonical, version)
    return list(packages.values()), problem


def parse_pip_check(text: str) -> list[str]:
    """pip check's complaints (one per line); none when it says all is well."""
    lines = [_clean(line, 500) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines or lines[0].lower().startswith("no broken requirements"):
        return []
    return lines


def parse_marker_env(text: str) -> dict | None:
    try:
        value = json.loads(text.strip().splitlines()[-1]) if text.strip() else None
    except ValueError:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return None
    return value


def parse_conda_list(text: str) -> tuple[list[Package], str | None]:
    """``<tool> list --json``; packages pip installed into the environment (channel pypi)
    are left to pip's list."""
    items, problem = _json_list(text, "conda list")
    packages = {}
    for item in items:
        name, version = _clean(item.get("name")), _clean(item.get("version"))
        channel = _conda_channel(item.get("channel") or item.get("base_url"))
        if not name or not version or channel == "pypi":
            continue
        build = _clean(item.get("build_string") or item.get("build"))
        subdir = _clean(item.get("platform") or item.get("subdir"), ARCH_MAX)
        number = item.get("build_number")
        packages[name] = Package("conda", name, version, arch=subdir, build=build, channel=channel,
                                 build_number=number if isinstance(number, int) and 0 <= number < 2**31 else 0)
    return list(packages.values()), problem


def _conda_channel(value) -> str | None:
    """``https://conda.anaconda.org/conda-forge/linux-64`` and ``conda-forge`` -> conda-forge."""
    value = _clean(value)
    if not value:
        return None
    if value.startswith(_CONDA_HOST):
        value = value[len(_CONDA_HOST):]
    parts = value.rstrip("/").split("/")
    if len(parts) > 1 and (parts[-1] == "noarch" or re.fullmatch(r"(linux|osx|win|emscripten|wasi)-\w+", parts[-1])):
        parts = parts[:-1]
    return "/".join(parts)


# -- the requested lines (pure) ----------------------------------------------------------


def check_requested(spec, manifest: Manifest) -> list[LineCheck]:
    """Each apt, pip and conda line of `spec` against the manifest, numbered as the spec
    stores them. A pip line whose marker is false for the image's Python is not required
    (its check has neither package nor problem)."""
    checks = []
    for field_name, match in (("apt", match_apt), ("pip", match_pip), ("conda", match_conda)):
        for number, line in enumerate(getattr(spec, field_name) or [], 1):
            package, problem = match(line, manifest)
            if problem:
                problem = f"{field_name} line {number} {line!r}: {problem}"
            checks.append(LineCheck(field_name, number, line, package, problem))
    return checks


def match_apt(line: str, manifest: Manifest) -> tuple[Package | None, str | None]:
    """``name``, ``name=version`` (that version, as dpkg compares: epoch 0 is no epoch) and
    ``name/release`` (the name); a plain name is also satisfied by a package providing it."""
    name, version = line, None
    if "=" in line:
        name, _, version = line.partition("=")
    elif "/" in line:
        name = line.partition("/")[0]
    installed = [p for p in manifest.of("apt") if p.name == name]
    if installed:
        if version is None:
            return installed[0], None
        for package in installed:
            if _debian_version(package.version) == _debian_version(version):
                return package, None
        found = ", ".join(f"{p.name} {p.version}" for p in installed)
        return None, f"installed {found} is not that version"
    if version is None:
        providers = [p for p in manifest.of("apt") if name in p.provides]
        if providers:
            return providers[0], None
    return None, f"dpkg lists no {name}" + ("" if version else " and no package that provides it")


def _debian_version(version: str) -> str:
    return version[2:] if version.startswith("0:") else version


def match_pip(line: str, manifest: Manifest) -> tuple[Package | None, str | None]:
    """A PEP 508 requirement: the distribution by its PEP 503 name, extras ignored, its
    specifier containing the installed version (pre-releases too: pip installed it)."""
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return None, "is not a requirement pip can read"
    if requirement.marker is not None and not _marker_holds(requirement, manifest.marker_env):
        return None, None
    name = canonicalize_name(requirement.name)
    package = next((p for p in manifest.of("pip") if p.name == name), None)
    if package is None:
        return None, f"pip lists no {name}"
    try:
        ok = requirement.specifier.contains(package.version, prereleases=True)
    except InvalidVersion:
        ok = False
    if not ok:
        return None, f"installed {name} {package.version} does not satisfy it"
    return package, None


def _marker_holds(requirement: Requirement, environment: dict | None) -> bool:
    try:
        return requirement.marker.evaluate({**(environment or {}), "extra": ""})
    except Exception:  # a marker the image's environment cannot answer: required, to be safe
        return True


def match_conda(line: str, manifest: Manifest) -> tuple[Package | None, str | None]:
    """A conda MatchSpec against the installed records (rattler), and its channel if it names one."""
    try:
        spec = MatchSpec(line, strict=False)
    except Exception:
        return None, "is not a MatchSpec rattler can read"
    name = spec.name.normalized if spec.name else None
    package = next((p for p in manifest.of("conda") if p.name.lower() == name), None)
    if package is None:
        return None, f"conda lists no {name}"
    found = f"installed {package.name} {package.version}" + (f" from {package.channel}" if package.channel else "")
    if spec.channel is not None and package.channel not in _channel_names(spec.channel):
        return None, f"{found} is not from channel {spec.channel.name}"
    try:
        record = PackageRecord(name=package.name, version=package.version, build=BuildString(package.build or ""),
                               build_number=package.build_number, subdir=package.arch or "noarch")
        ok = spec.matches(record)
    except Exception:
        ok = False
    if not ok:
        return None, f"{found} ({package.build or 'no build string'}) does not satisfy it"
    return package, None


def _channel_names(channel) -> set[str]:
    names = {channel.name, _conda_channel(channel.base_url)}
    return {n for n in names if n}
