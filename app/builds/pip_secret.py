"""pip index URLs that carry credentials (``https://user:token@mirror/simple``), handed to
the build as a Podman build secret instead of being written into the Containerfile.

A URL without a user name or password is left alone: the renderer writes it into the pip
step's environment as it always has (the same Containerfile, the same layer cache). When
PIP_INDEX_URL or one of PIP_EXTRA_INDEX_URLS carries credentials, this module owns:

- the pip step's Containerfile options (``PipIndexSecret.build_options``): the step mounts
  the secret ``imagebuilder-pip-index`` (``RUN --mount=type=secret,...``) and points
  ``PIP_CONFIG_FILE`` at it, so the credentials reach pip only for that one RUN step, never
  an ``ENV``, a layer's file or a history line. The step names the indexes with their
  password masked (``https://user:***@mirror/simple``, ``mask``) so that a changed mirror
  changes the step, as it does today; that masked form is all the job snapshot, the job
  page and the image history ever show. None of them is in the preview, which renders no
  build options;
- the secret itself, a pip.conf (``pip_conf``: ``index-url`` and ``extra-index-url``, all
  the configured indexes, because pip's environment variables would win over the file),
  and how Podman 4.3 takes it: the libpod ``/build`` endpoint's ``secrets`` parameter is a
  JSON list of ``id=...,src=...`` whose ``src`` is a path INSIDE the uploaded build context
  (an absolute host path is refused). Podman extracts the context into a private
  ``libpod_builder*`` directory of the rootless service user (mode 0700, under its
  TMPDIR), moves the file out of the context directory before the build starts, so no
  ``COPY`` can see it, and removes that directory when the build ends. So the file goes
  into the context tar only (``add_to_context``, mode 0600, in memory: nothing is written
  on the worker's disk), and ``build_params`` names it;
- the forms in which the credential could turn up in the log, for redaction
  (``secret_forms``); pip masks the password in its own "Looking in indexes" line.

What it costs the layer cache: nothing, measured on Podman 4.3.1. The secret's content
is not part of a step's cache key, the step's line is: the pip step is reused from the
host's own cache and pushed to and pulled from the shared cache (cache.py) like any other,
so a changed password alone rebuilds nothing, a changed mirror or user name does
(tests/integration/test_private_pip_mirror.py, README "Configuration").
"""
from __future__ import annotations

import io
import json
import re
import tarfile
import urllib.parse
from dataclasses import dataclass

SECRET_ID = "imagebuilder-pip-index"
# The secret's name in the build context; Podman moves it out of the context directory.
CONTEXT_NAME = "imagebuilder-pip-index.conf"
MASK = "***"
_URL_RE = re.compile(r"https?://[\x21-\x7e]+")


def _userinfo(url: str) -> tuple[str, str] | None:
    """(user, password) as written in the URL (still percent-encoded), or None when it
    names neither. A URL with only a user name counts: that is how many tokens are sent."""
    netloc = urllib.parse.urlsplit(url).netloc
    if "@" not in netloc:
        return None
    info = netloc.rpartition("@")[0]
    user, _, password = info.partition(":")
    return (user, password) if info else None


def has_credentials(url: str | None) -> bool:
    return bool(url) and _userinfo(url) is not None


def mask(url: str) -> str:
    """The URL with its password (or, with no password, its user name) replaced by ***:
    ``https://user:***@mirror/simple``. A URL without credentials is returned as it is."""
    credentials = _userinfo(url)
    if credentials is None:
        return url
    user, password = credentials
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    shown = f"{user}:{MASK}" if password else MASK
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{shown}@{host}"))


def pip_conf(index_url: str | None, extra_index_urls: tuple[str, ...]) -> str:
    """The pip.conf the pip step reads (PIP_CONFIG_FILE). pip reads it with
    RawConfigParser: no interpolation, so a % in a password stays as it is."""
    lines = ["[global]"]
    if index_url:
        lines.append(f"index-url = {index_url}")
    if extra_index_urls:
        lines.append("extra-index-url =")
        lines += [f"    {url}" for url in extra_index_urls]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PipIndexSecret:
    """The configured pip indexes, at least one of them with credentials."""

    index_url: str | None
    extra_index_urls: tuple[str, ...]

    @classmethod
    def from_config(cls, config) -> "PipIndexSecret | None":
        """None when no pip index URL carries credentials: then nothing changes."""
        index_url = config.get("PIP_INDEX_URL") or None
        extras = tuple(u for u in (config.get("PIP_EXTRA_INDEX_URLS") or ()) if u)
        if not any(has_credentials(url) for url in (index_url, *extras)):
            return None
        for url in (index_url, *extras):
            # The renderer checks the masked forms; the file must not get a line break either.
            if url and not _URL_RE.fullmatch(url):
                raise ValueError(f"pip index URL {mask(url)!r} is not a single http(s) URL")
        return cls(index_url, extras)

    def build_options(self) -> dict:
        """BuildOptions fields (app/specs/containerfile.py) for the pip step."""
        return {
            "pip_index_url": mask(self.index_url) if self.index_url else None,
            "pip_extra_index_urls": tuple(mask(url) for url in self.extra_index_urls),
            "pip_config_secret": SECRET_ID,
        }

    def add_to_context(self, context: bytes) -> bytes:
        """The build context tar with the pip.conf added (mode 0600)."""
        data = pip_conf(self.index_url, self.extra_index_urls).encode("utf-8")
        buffer = io.BytesIO(context)
        with tarfile.open(fileobj=buffer, mode="a") as tar:
            info = tarfile.TarInfo(CONTEXT_NAME)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def build_params(self) -> dict:
        """Podman's ``/build`` parameter naming the secret (src: inside the context)."""
        return {"secrets": json.dumps([f"id={SECRET_ID},src={CONTEXT_NAME}"])}

    def secret_forms(self) -> list[str]:
        """Every form of the credentials that could reach the log, for redaction."""
        forms = []
        for url in (self.index_url, *self.extra_index_urls):
            credentials = _userinfo(url) if url else None
            if credentials is None:
                continue
            user, password = credentials
            secret = password or user  # a token sent as the user name
            forms += [secret, urllib.parse.unquote(secret)]
        return [form for form in forms if form]
