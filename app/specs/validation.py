"""Validation and normalisation of everything an admin types into an image spec.

Pure functions, no Flask: the page, the JSON API and the build all call
``validate_spec``. Every line is either accepted in a normalised form or reported
with its line number and a reason; nothing is ever dropped silently.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from rattler import MatchSpec

PACKAGE_FIELDS = ("apt", "pip", "conda")
NAME_MAX_LENGTH = 128

# A registry path component (distribution spec): lowercase alphanumerics separated
# by single '.', '_', '__' or runs of '-'.
_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")

# Image reference grammar of distribution/reference, written out.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE_RE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_REFERENCE_NAME_MAX = 255

_APT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# Debian policy 5.6.12: [epoch:]upstream_version[-debian_revision]
_APT_VERSION_RE = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*$")
_APT_RELEASE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_INLINE_COMMENT_RE = re.compile(r"\s+#.*$")
_CONDA_URL_KEY_RE = re.compile(r"[\[,]\s*url\s*=")
_DEFAULT_CONDA_HOST = "https://conda.anaconda.org/"


class LineInvalid(ValueError):
    """A package line that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str
    line: int | None = None
    text: str | None = None

    def as_dict(self):
        return {"field": self.field, "line": self.line, "message": self.message}


@dataclass
class SpecInput:
    """A validated, normalised spec. Package lists are sorted and de-duplicated."""

    name: str
    base_image: str
    pull_secret: str | None = None
    apt: list[str] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)
    conda: list[str] = field(default_factory=list)


@dataclass
class ValidationResult:
    spec: SpecInput | None
    errors: list[FieldError]

    @property
    def ok(self):
        return not self.errors

    def errors_for(self, field_name):
        return [e for e in self.errors if e.field == field_name]


def validate_name(name: str) -> list[str]:
    if not name:
        return ["A name is required."]
    if len(name) > NAME_MAX_LENGTH:
        return [f"At most {NAME_MAX_LENGTH} characters (this one has {len(name)})."]
    bad = sorted({c for c in name if not re.match(r"[a-z0-9._-]", c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return [f"Only lowercase letters, digits, '.', '-' and '_' are allowed (found {shown})."]
    if not _NAME_RE.match(name):
        return [
            "Must start and end with a letter or digit, and '.', '_' may not be doubled "
            "or mixed (it becomes part of the image's registry path)."
        ]
    return []


def validate_image_reference(ref: str) -> list[str]:
    if not ref:
        return ["A base image is required."]
    if _CONTROL_RE.search(ref) or any(c.isspace() for c in ref):
        return ["An image reference may not contain spaces, line breaks or control characters."]
    match = _REFERENCE_RE.match(ref)
    if not match:
        return [
            "Not a valid image reference; expected [registry[:port]/]path[:tag][@sha256:digest], "
            "for example docker.io/library/debian:bookworm."
        ]
    if len(match.group("name")) > _REFERENCE_NAME_MAX:
        return [f"The repository name is longer than {_REFERENCE_NAME_MAX} characters."]
    return []


def registry_host(ref: str) -> str:
    """The registry a (valid) reference pulls from, as Docker would resolve it."""
    first, sep, _rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def iter_package_lines(text: str):
    """(line number, content) for each line that is not blank or a comment."""
    for number, raw in enumerate((text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        yield number, _INLINE_COMMENT_RE.sub("", line)


def normalize_apt(line: str) -> tuple[str, str]:
    """('name[=version|/release]', duplicate key) or LineInvalid."""
    if _CONTROL_RE.search(line):
        raise LineInvalid("Control characters are not allowed.")
    if line.startswith("-"):
        raise LineInvalid("Options are not allowed, only package names.")
    if any(c.isspace() for c in line):
        raise LineInvalid("One package per line; spaces are not allowed.")
    name, version, release = line, None, None
    if "=" in line:
        name, _, version = line.partition("=")
    elif "/" in line:
        name, _, release = line.partition("/")
    if not _APT_NAME_RE.match(name):
        if name.lower() != name and _APT_NAME_RE.match(name.lower()):
            raise LineInvalid(f"Debian package names are lowercase: did you mean {name.lower()!r}?")
        raise LineInvalid(
            f"{name!r} is not a Debian package name (lowercase letters, digits, '+', '-', '.'; "
            "at least two characters, starting with a letter or digit)."
        )
    if version is not None:
        if not _APT_VERSION_RE.match(version) or version.count(":") > 1:
            raise LineInvalid(f"{version!r} is not a Debian version ([epoch:]upstream[-revision]).")
        return f"{name}={version}", name
    if release is not None:
        if not _APT_RELEASE_RE.match(release):
            raise LineInvalid(f"{release!r} is not a release name (for example bookworm-backports).")
        return f"{name}/{release}", name
    return name, name


def normalize_pip(line: str) -> tuple[str, str]:
    """A PEP 508 requirement in canonical form, or LineInvalid."""
    if _CONTROL_RE.search(line):
        raise LineInvalid("Control characters are not allowed.")
    if line.startswith("-"):
        option = line.split()[0].split("=")[0]
        raise LineInvalid(
            f"pip options such as {option} are not allowed here; index URLs are set by the "
            "operator (PIP_INDEX_URL, PIP_EXTRA_INDEX_URLS)."
        )
    try:
        req = Requirement(line)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise LineInvalid(f"Not a valid requirement (PEP 508): {reason}") from None
    if req.url:
        raise LineInvalid("Direct URL references (name @ URL) are not allowed; name a package from the index.")
    name = canonicalize_name(req.name)
    text = name
    if req.extras:
        text += "[" + ",".join(sorted(canonicalize_name(e) for e in req.extras)) + "]"
    if req.specifier:
        text += ",".join(sorted(str(s) for s in req.specifier))
    if req.marker:
        text += f"; {req.marker}"
    return text, name


def normalize_conda(line: str, allowed_channels=()) -> tuple[str, str]:
    """A conda MatchSpec in rattler's canonical form, or LineInvalid."""
    if _CONTROL_RE.search(line):
        raise LineInvalid("Control characters are not allowed.")
    if line.startswith("-"):
        raise LineInvalid("Options are not allowed, only package specs.")
    try:
        spec = MatchSpec(line, strict=True)
    except Exception as strict_error:  # rattler raises its own InvalidMatchSpecError
        # conda itself accepts some ambiguous forms (numpy==1.17*, "numpy 1.17"): take
        # them when their normalised form parses strictly, refuse everything else.
        try:
            spec = MatchSpec(line)
            MatchSpec(str(spec), strict=True)
        except Exception:
            raise LineInvalid(f"Not a valid conda MatchSpec: {_first_line(strict_error)}") from None
    if spec.name is None:
        raise LineInvalid("A package name is required.")
    text = str(spec)
    if _CONDA_URL_KEY_RE.search(text):
        raise LineInvalid("The [url=...] key is not allowed; name a package from a channel.")
    if spec.channel is not None and not spec.channel.base_url.startswith(_DEFAULT_CONDA_HOST):
        allowed = {c.rstrip("/") + "/" for c in allowed_channels}
        if spec.channel.base_url not in allowed:
            raise LineInvalid(
                f"Channel URL {spec.channel.base_url} is not allowed; the operator can allow it "
                "in CONDA_ALLOWED_CHANNELS, or use a named channel such as conda-forge."
            )
    return text, spec.name.normalized


_NORMALIZERS = {"apt": normalize_apt, "pip": normalize_pip}


def validate_package_lines(field_name: str, text: str, allowed_channels=()):
    """(sorted normalised lines, errors) for one package textarea."""
    accepted: dict[str, str] = {}
    seen: dict[str, int] = {}
    errors: list[FieldError] = []
    for number, line in iter_package_lines(text):
        try:
            if field_name == "conda":
                normalized, key = normalize_conda(line, allowed_channels)
            else:
                normalized, key = _NORMALIZERS[field_name](line)
        except LineInvalid as exc:
            errors.append(FieldError(field_name, str(exc), number, line))
            continue
        if key in seen:
            errors.append(
                FieldError(field_name, f"{key!r} is already listed on line {seen[key]}.", number, line)
            )
            continue
        seen[key] = number
        accepted[key] = normalized
    return sorted(accepted.values(), key=_sort_key), errors


def _sort_key(normalized: str):
    return (normalized.lower(), normalized)


def _first_line(exc) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _as_text(value) -> str:
    """Package fields arrive as textarea text (page) or lists of strings (API)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value)
    return str(value)


def validate_spec(data: dict, *, allowed_channels=(), check_name=True) -> ValidationResult:
    """Validate a whole spec; ``data`` holds name, base_image, pull_secret, apt, pip, conda."""
    errors: list[FieldError] = []
    name = (data.get("name") or "").strip()
    base_image = (data.get("base_image") or "").strip()
    if check_name:
        errors += [FieldError("name", m) for m in validate_name(name)]
    errors += [FieldError("base_image", m) for m in validate_image_reference(base_image)]
    lists = {}
    for field_name in PACKAGE_FIELDS:
        lists[field_name], field_errors = validate_package_lines(
            field_name, _as_text(data.get(field_name)), allowed_channels
        )
        errors += field_errors
    spec = SpecInput(
        name=name,
        base_image=base_image,
        pull_secret=(data.get("pull_secret") or None),
        **lists,
    )
    return ValidationResult(spec=None if errors else spec, errors=errors)
