"""Containerfile rendering: one pure function that the preview and the build share.

Every package is written as a single-quoted shell word (``shlex.quote``), so no shell
ever interprets what an admin typed. Validation has already refused line breaks,
control characters and leading '-'; the renderer checks those again (and the base
image and user) so that nothing it is handed can start a new Containerfile
instruction or become an option. Layers come in the order that keeps caches warm:
APT (changes least), Conda, pip. The spec's test command closes the file as a comment:
it is not built (the verify step runs it), but it is seen in the preview and counts in
the input hash, and a comment after the last instruction leaves the layer cache alone.

A pip index URL with credentials never reaches this file: the build hands the indexes
to the pip step as a secret (app/builds/pip_secret.py) and passes only their masked
forms and the secret's id; the renderer refuses a URL whose user name or password is
not masked.
"""
from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field

from .validation import PACKAGE_FIELDS, SpecInput, validate_image_reference, validate_test_command

# Where the build copies the operator's extra CA bundle; not the system bundle path,
# which installing ca-certificates would regenerate.
CA_BUNDLE_PATH = "/usr/local/share/imagebuilder/ca-bundle.pem"
CA_BUNDLE_CONTEXT_NAME = "imagebuilder-ca-bundle.pem"
CONDA_TOOLS = ("micromamba", "mamba", "conda")

# USER takes a name or uid, optionally ':' and a group name or gid; '$' would be
# expanded by the Containerfile parser, so it is not allowed.
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")
_ROOT_NAMES = ("root", "0")
_SHELL_WORD_RE = re.compile(r"[\x21-\x7e][\x20-\x7e]*")
_URL_RE = re.compile(r"https?://[\x21-\x7e]+")
# The user-info part of a URL (before the host's @), and the only forms allowed here.
_USERINFO_RE = re.compile(r"^[A-Za-z]+://([^/?#]*)@")
_MASKED_USERINFO_RE = re.compile(r"(?:[^:]*:)?\*\*\*")
SECRETS_DIR = "/run/secrets"


@dataclass(frozen=True)
class BuildOptions:
    """What only the build knows; the defaults render the plain preview."""

    ca_bundle: bool = False
    pip_index_url: str | None = None
    pip_extra_index_urls: tuple[str, ...] = field(default_factory=tuple)
    # The id of a build secret holding the pip.conf with the indexes (their credentials);
    # the URLs above are then their masked forms, named on the step but not used by pip.
    pip_config_secret: str | None = None
    # The base image's configured user, restored at the end when it is not root.
    base_user: str | None = None


def render_containerfile(spec: SpecInput, options: BuildOptions | None = None) -> str:
    """The Containerfile for a validated spec; ValueError if anything could escape its quoting."""
    options = options or BuildOptions()
    _check_inputs(spec, options)
    lines = [f"FROM {spec.base_image}"]
    switch_user = bool(options.base_user) and options.base_user.split(":")[0] not in _ROOT_NAMES
    if switch_user:
        lines.append("USER root")
    if options.ca_bundle:
        lines.append(f"COPY {CA_BUNDLE_CONTEXT_NAME} {CA_BUNDLE_PATH}")

    if spec.apt:
        lines += [
            "RUN export DEBIAN_FRONTEND=noninteractive \\",
            " && apt-get update \\",
            " && apt-get install -y --no-install-recommends \\",
            *_words(spec.apt),
            " && apt-get clean \\",
            " && rm -rf /var/lib/apt/lists/*",
        ]

    if spec.conda:
        ssl_env = _env_prefix(
            [
                ("CONDA_SSL_VERIFY", CA_BUNDLE_PATH if options.ca_bundle else None),
                ("MAMBA_SSL_VERIFY", CA_BUNDLE_PATH if options.ca_bundle else None),
            ]
        )
        # Into the active environment if the image has one, else into base
        # (micromamba has no default target; conda and mamba use base anyway).
        lines += [
            'RUN set -e; tool=""; \\',
            f"    for t in {' '.join(CONDA_TOOLS)}; do \\",
            '      if command -v "$t" >/dev/null 2>&1; then tool="$t"; break; fi; \\',
            "    done; \\",
            '    if [ -z "$tool" ]; then echo "no micromamba, mamba or conda in the base image" >&2; exit 1; fi; \\',
            '    set -- -n base; if [ -n "${CONDA_PREFIX:-}" ]; then set -- -p "$CONDA_PREFIX"; fi; \\',
            f'    {ssl_env + " " if ssl_env else ""}"$tool" install -y "$@" \\',
            *_words(spec.conda),
            '    && "$tool" clean --all -y',
        ]

    if spec.pip:
        # PEP 668 (Debian's pip refuses system installs otherwise); no root-user warning
        # or version check in the admin's build log.
        extra_index_urls = " ".join(u for u in options.pip_extra_index_urls if u)
        secret = options.pip_config_secret
        index_names = ("IMAGEBUILDER_PIP_INDEX_URL", "IMAGEBUILDER_PIP_EXTRA_INDEX_URL") if secret else (
            "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
        env = _env_prefix(
            [
                ("PIP_CONFIG_FILE", f"{SECRETS_DIR}/{secret}" if secret else None),
                ("PIP_BREAK_SYSTEM_PACKAGES", "1"),
                ("PIP_ROOT_USER_ACTION", "ignore"),
                ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
                # A refused password fails the step rather than waiting for a prompt.
                ("PIP_NO_INPUT", "1" if secret else None),
                ("PIP_CERT", CA_BUNDLE_PATH if options.ca_bundle else None),
                (index_names[0], options.pip_index_url),
                (index_names[1], extra_index_urls),
            ]
        )
        mount = f"--mount=type=secret,id={secret},required=true " if secret else ""
        lines += [
            f"RUN {mount}{env} \\",
            "    pip install --no-cache-dir \\",
            *_words(spec.pip),
        ]
        lines[-1] = lines[-1][: -len(" \\")]

    if switch_user:
        lines.append(f"USER {options.base_user}")
    if spec.test_command:
        lines += [
            "# Test command, run in the built image before the push:",
            f"# {spec.test_command}",
        ]
    return "\n".join(lines) + "\n"


def input_hash(containerfile: str) -> str:
    """Short content hash of the build inputs: the same inputs give the same hash."""
    return hashlib.sha256(containerfile.encode("utf-8")).hexdigest()[:8]


def _words(items, indent="      "):
    return [f"{indent}{shlex.quote(item)} \\" for item in items]


def _env_prefix(pairs):
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in pairs if v)


def _check_inputs(spec: SpecInput, options: BuildOptions) -> None:
    """Refuse what validation would never pass but a caller might still hand over."""
    problems = validate_image_reference(spec.base_image)
    if problems:
        raise ValueError(f"base image {spec.base_image!r}: {problems[0]}")
    for field_name in PACKAGE_FIELDS:
        for item in getattr(spec, field_name):
            if not _SHELL_WORD_RE.fullmatch(item) or item.startswith("-"):
                raise ValueError(f"{field_name} entry {item!r} is not a validated package line")
    if spec.test_command and validate_test_command(spec.test_command):
        raise ValueError(f"test command {spec.test_command!r} is not a validated one-line command")
    if options.base_user and not _USER_RE.fullmatch(options.base_user):
        raise ValueError(f"base user {options.base_user!r} is not a plain user[:group] name or id")
    for url in (options.pip_index_url, *options.pip_extra_index_urls):
        if url and not _URL_RE.fullmatch(url):
            raise ValueError(f"pip index URL {url!r} is not a single http(s) URL")
        userinfo = _USERINFO_RE.match(url or "")
        if userinfo and not (options.pip_config_secret and _MASKED_USERINFO_RE.fullmatch(userinfo.group(1))):
            raise ValueError("a pip index URL with a user name or password is handed to the build as a "
                             "secret (app/builds/pip_secret.py), never written into the Containerfile")
    if options.pip_config_secret and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", options.pip_config_secret):
        raise ValueError(f"build secret id {options.pip_config_secret!r} is not a plain id")
