"""Containerfile rendering: one pure function that the preview and the build share.

Every package is written as a single-quoted shell word (``shlex.quote``), so no shell
ever interprets what an admin typed; validation has already refused line breaks and
control characters, so nothing can start a new Containerfile instruction either.
Layers come in the order that keeps caches warm: APT (changes least), Conda, pip.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field

from .validation import SpecInput

# Where the build copies the operator's extra CA bundle; not the system bundle path,
# which installing ca-certificates would regenerate.
CA_BUNDLE_PATH = "/usr/local/share/imagebuilder/ca-bundle.pem"
CA_BUNDLE_CONTEXT_NAME = "imagebuilder-ca-bundle.pem"
CONDA_TOOLS = ("micromamba", "mamba", "conda")


@dataclass(frozen=True)
class BuildOptions:
    """What only the build knows; the defaults render the plain preview."""

    ca_bundle: bool = False
    pip_index_url: str | None = None
    pip_extra_index_urls: tuple[str, ...] = field(default_factory=tuple)
    # The base image's configured user, restored at the end when it is not root.
    base_user: str | None = None


def _words(items, indent="      "):
    return [f"{indent}{shlex.quote(item)} \\" for item in items]


def _env_prefix(pairs):
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in pairs if v)


def render_containerfile(spec: SpecInput, options: BuildOptions | None = None) -> str:
    options = options or BuildOptions()
    lines = [f"FROM {spec.base_image}"]
    switch_user = bool(options.base_user) and options.base_user not in ("root", "0", "0:0")
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
        ca_env = _env_prefix([("CONDA_SSL_VERIFY", CA_BUNDLE_PATH if options.ca_bundle else None)])
        lines += [
            'RUN set -e; tool=""; \\',
            f"    for t in {' '.join(CONDA_TOOLS)}; do \\",
            '      if command -v "$t" >/dev/null 2>&1; then tool="$t"; break; fi; \\',
            "    done; \\",
            '    if [ -z "$tool" ]; then echo "no micromamba, mamba or conda in the base image" >&2; exit 1; fi; \\',
            f'    {ca_env + " " if ca_env else ""}"$tool" install -y \\',
            *_words(spec.conda),
            '    && "$tool" clean --all -y',
        ]

    if spec.pip:
        env = _env_prefix(
            [
                ("PIP_BREAK_SYSTEM_PACKAGES", "1"),
                ("PIP_CERT", CA_BUNDLE_PATH if options.ca_bundle else None),
                ("PIP_INDEX_URL", options.pip_index_url),
                ("PIP_EXTRA_INDEX_URL", " ".join(options.pip_extra_index_urls)),
            ]
        )
        lines += [
            f"RUN {env} \\",
            "    pip install --no-cache-dir \\",
            *_words(spec.pip),
        ]
        lines[-1] = lines[-1][: -len(" \\")]

    if switch_user:
        lines.append(f"USER {options.base_user}")
    return "\n".join(lines) + "\n"


def input_hash(containerfile: str) -> str:
    """Short content hash of the build inputs: the same inputs give the same hash."""
    return hashlib.sha256(containerfile.encode("utf-8")).hexdigest()[:8]
