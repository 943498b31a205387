"""Validation and normalisation of everything an admin types into an image spec.

Pure functions, no Flask: the page, the JSON API and the build all call
``validate_spec``. Every line is either accepted in a normalised form or reported
with its line number and a reason; nothing is ever dropped silently.

Accepted package lines contain printable ASCII only (no line breaks, no control
characters) and never start with '-', so the renderer can write each one as a
single quoted shell word that no shell and no Containerfile parser interprets.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from rattler import MatchSpec, Subdir

PACKAGE_FIELDS = ("apt", "pip", "conda")
NAME_MAX_LENGTH = 128
LINE_MAX_LENGTH = 500

# A registry path component with single separators only: the distribution spec also
# allows '__' and runs of '-', but the catalogue keeps names plain.
_NAME_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")

# Image reference grammar of distribution/reference, written out (ASCII only).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"(?P<algorithm>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[0-9a-fA-F]+)"
_REFERENCE_RE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@{_DIGEST})?"
)
_REFERENCE_NAME_MAX = 255
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_APT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
# Debian policy 5.6.12: [epoch:]upstream_version[-debian_revision]
_APT_VERSION_RE = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
_APT_RELEASE_RE = re.compile(r"[a-z0-9][a-z0-9.+-]*")

_PRINTABLE_ASCII_RE = re.compile(r"[\x20-\x7e]*")
_INLINE_COMMENT_RE = re.compile(r"\s+#.*$")
_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")

_PIP_INDEX_OPTIONS = {"-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links", "--trusted-host"}

_CONDA_URL_KEY_RE = re.compile(r"[\[,]\s*url\s*=")
_CONDA_BRACKET_KEY_RE = re.compile(r"\b[a-z_]+\s*=(?!=)")
_CONDA_TOKEN_RE = re.compile(r"[A-Za-z0-9_]+|\*")
_CONDA_VERSION_ATOM_RE = re.compile(r"[A-Za-z0-9_.+!*]+")
_DEFAULT_CONDA_HOST = "https://conda.anaconda.org/"
_CONDA_CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*/")
_CONDA_SUBDIRS = frozenset(str(s) for s in Subdir.all())


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
    bad = sorted({c for c in name if not re.fullmatch(r"[a-z0-9._-]", c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        message = f"Only lowercase letters, digits, '.', '-' and '_' are allowed (found {shown})."
        if name.lower() != name and not validate_name(name.lower()):
            message += f" Did you mean {name.lower()!r}?"
        return [message]
    if not _NAME_RE.fullmatch(name):
        return [
            "'.', '-' and '_' may only stand between letters or digits: no separator at the "
            "start or end, and no two in a row (the name becomes the image's registry path)."
        ]
    return []


def validate_image_reference(ref: str) -> list[str]:
    if not ref:
        return ["A base image is required."]
    if not _PRINTABLE_ASCII_RE.fullmatch(ref) or " " in ref:
        return ["An image reference may not contain spaces, line breaks, control or non-ASCII characters."]
    match = _REFERENCE_RE.fullmatch(ref)
    if not match:
        lowered = _with_lowercase_path(ref)
        if lowered != ref and _REFERENCE_RE.fullmatch(lowered):
            return [f"The repository path must be lowercase: did you mean {lowered!r}?"]
        return [
            "Not a valid image reference; expected [registry[:port]/]path[:tag][@sha256:digest], "
            "for example docker.io/library/debian:bookworm."
        ]
    if len(match.group("name")) > _REFERENCE_NAME_MAX:
        return [f"The repository name is longer than {_REFERENCE_NAME_MAX} characters."]
    algorithm, digest = match.group("algorithm"), match.group("hex")
    if algorithm is not None:
        expected = _DIGEST_HEX_LENGTHS.get(algorithm)
        if expected is None:
            return [f"Unsupported digest algorithm {algorithm!r}; use sha256."]
        if len(digest) != expected or digest != digest.lower():
            return [f"A {algorithm} digest is {expected} lowercase hexadecimal characters."]
    return []


def _with_lowercase_path(ref: str) -> str:
    host, rest = "", ref
    if _looks_like_registry(ref):
        host, _, rest = ref.partition("/")
        host += "/"
    path = re.split(r"[:@]", rest, maxsplit=1)[0]
    return host + path.lower() + rest[len(path):]


def _looks_like_registry(ref: str) -> bool:
    first, sep, _rest = ref.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost" or first.startswith("["))


def registry_host(ref: str) -> str:
    """The registry a (valid) reference pulls from, as Docker would resolve it."""
    if _looks_like_registry(ref):
        return ref.partition("/")[0]
    return "docker.io"


def iter_package_lines(text: str):
    """(line number, content) for each line that is not blank or a comment.

    Line numbers are those of the textarea as typed: 1-based, blank lines and
    comments counted; CRLF and lone CR end a line like LF does.
    """
    for number, raw in enumerate(_LINE_BREAK_RE.split(text or ""), 1):
        content = _package_content(raw)
        if content:
            yield number, content


def _package_content(raw: str) -> str:
    """A line without surrounding blanks and comments; '' when nothing is left."""
    line = raw.strip()
    if line.startswith("#"):
        return ""
    return _INLINE_COMMENT_RE.sub("", line)


def _check_characters(line: str) -> None:
    if len(line) > LINE_MAX_LENGTH:
        raise LineInvalid(f"The line is too long ({len(line)} characters, at most {LINE_MAX_LENGTH}).")
    if _PRINTABLE_ASCII_RE.fullmatch(line):
        return
    bad = next(c for c in line if not _PRINTABLE_ASCII_RE.fullmatch(c))
    if bad.isascii():
        raise LineInvalid(f"Control characters such as {bad!r} (tabs included) are not allowed.")
    raise LineInvalid(f"Only ASCII characters are allowed; found {bad!r}.")


def normalize_apt(line: str) -> tuple[str, str]:
    """('name[=version|/release]', duplicate key) or LineInvalid."""
    _check_characters(line)
    if line.startswith("-"):
        raise LineInvalid("Options are not allowed, only package names.")
    if " " in line:
        raise LineInvalid("One package per line; spaces are not allowed.")
    name, version, release = line, None, None
    if "=" in line:
        name, _, version = line.partition("=")
    elif "/" in line:
        name, _, release = line.partition("/")
    if not _APT_NAME_RE.fullmatch(name):
        if name.lower() != name and _APT_NAME_RE.fullmatch(name.lower()):
            raise LineInvalid(f"Debian package names are lowercase: did you mean {name.lower()!r}?")
        if ":" in name and _APT_NAME_RE.fullmatch(name.partition(":")[0]):
            raise LineInvalid("Architecture qualifiers (name:arch) are not supported; the image's own architecture is used.")
        raise LineInvalid(
            f"{name!r} is not a Debian package name (lowercase letters, digits, '+', '-', '.'; "
            "at least two characters, starting with a letter or digit)."
        )
    if version is not None:
        if not version:
            raise LineInvalid("A version is required after '='.")
        if not _APT_VERSION_RE.fullmatch(version):
            raise LineInvalid(f"{version!r} is not a Debian version ([epoch:]upstream[-revision]).")
        return f"{name}={version}", name
    if release is not None:
        if not _APT_RELEASE_RE.fullmatch(release):
            raise LineInvalid(f"{release!r} is not a release name (for example bookworm-backports).")
        return f"{name}/{release}", name
    return name, name


def normalize_pip(line: str) -> tuple[str, str]:
    """A PEP 508 requirement in canonical form, or LineInvalid."""
    _check_characters(line)
    if line.startswith("-"):
        raise LineInvalid(_pip_option_reason(line.split()[0].split("=")[0]))
    if "://" in line.split(";")[0].split("@")[0] or line.startswith((".", "/", "~")):
        raise LineInvalid("URLs and paths are not allowed; name a package from the index (for example requests>=2).")
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


def _pip_option_reason(option: str) -> str:
    if option in _PIP_INDEX_OPTIONS:
        return (
            f"pip option {option} is not allowed here; package indexes are set by the operator "
            "(PIP_INDEX_URL, PIP_EXTRA_INDEX_URLS)."
        )
    if option in ("-r", "--requirement", "-c", "--constraint"):
        return f"pip option {option} is not allowed here; list the packages themselves, one per line."
    if option in ("-e", "--editable"):
        return "Editable installs (-e) are not allowed; name a package from the index."
    return f"pip options such as {option} are not allowed here, only requirements (for example requests>=2)."


def normalize_conda(line: str, allowed_channels=()) -> tuple[str, str]:
    """A conda MatchSpec in rattler's canonical form, or LineInvalid."""
    _check_characters(line)
    if line.startswith("-"):
        raise LineInvalid("Options are not allowed, only package specs.")
    if "#" in line:
        # rattler, like conda, would cut the line at '#' without a word.
        raise LineInvalid("'#' may only start a comment, after a space (numpy  # why).")
    spec = _parse_match_spec(line)
    if spec.name is None:
        raise LineInvalid("A package name is required.")
    if spec.namespace is not None:
        raise LineInvalid("Namespaces (channel:namespace:name) are not supported; write channel::name.")
    text = str(spec)
    if _CONDA_URL_KEY_RE.search(text):
        raise LineInvalid("Package URLs (url=... or a package file URL) are not allowed; name a package from a channel.")
    if spec.subdir is not None and spec.subdir not in _CONDA_SUBDIRS:
        raise LineInvalid(f"Unknown subdir {spec.subdir!r}; expected a platform such as linux-64 or noarch.")
    if spec.channel is not None and spec.channel.base_url.startswith(_DEFAULT_CONDA_HOST):
        named = spec.channel.base_url[len(_DEFAULT_CONDA_HOST):]
        if not _CONDA_CHANNEL_NAME_RE.fullmatch(named):
            raise LineInvalid(
                "A channel name may only contain letters, digits, '.', '_', '-' and '/' "
                "(for example conda-forge or conda-forge/label/dev)."
            )
    elif spec.channel is not None:
        allowed = {c.rstrip("/") + "/" for c in allowed_channels}
        if spec.channel.base_url not in allowed:
            if spec.channel.base_url.startswith("file:"):
                raise LineInvalid("Local channels (file paths) are not allowed; use a named channel such as conda-forge.")
            raise LineInvalid(
                f"Channel URL {_without_password(spec.channel.base_url)} is not allowed; the operator can allow it "
                "in CONDA_ALLOWED_CHANNELS, or use a named channel such as conda-forge."
            )
    if not _PRINTABLE_ASCII_RE.fullmatch(text) or text.startswith("-") or not _is_stable(spec):
        raise LineInvalid(f"This spec does not read back the same once normalised ({text!r}); write it plainly.")
    return text, spec.name.normalized


def _without_password(url: str) -> str:
    """Error messages end up on pages and in API answers: no credentials in them."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _parse_match_spec(line: str) -> MatchSpec:
    """Strict parse; the lenient one only when it keeps every part of the line.

    conda itself reads some ambiguous forms (numpy==1.17*, "numpy 1.17",
    numpy=1.2=py38) that rattler's strict mode refuses. Its lenient mode reads
    them like conda does, but it also quietly drops parts of other lines (a
    repeated [version=...], the '*' of ==1.17*=py38) and takes any second word
    for a version. So a lenient result counts only when it keeps every word,
    number and '*' of the line, its versions start with digits, and it is stable;
    otherwise the strict parser's reason is shown. (normalize_conda then checks
    that every result, strict or lenient, is stable.)
    """
    try:
        spec = MatchSpec(line, strict=True)
    except Exception as strict_error:  # rattler raises its own InvalidMatchSpecError
        reason = f"Not a valid conda MatchSpec: {_first_line(strict_error)}"
        try:
            spec = MatchSpec(line)
        except Exception:
            raise LineInvalid(reason) from None
        lost = Counter(_conda_tokens(line)) - Counter(_conda_tokens(str(spec)))
        if lost or not _looks_like_versions(spec.version) or not _is_stable(spec):
            raise LineInvalid(reason)
    return spec


def _is_stable(spec: MatchSpec) -> bool:
    """The normalised text parses strictly to itself, so a stored line stays as it is."""
    text = str(spec)
    try:
        return str(MatchSpec(text, strict=True)) == text
    except Exception:
        return False


def _looks_like_versions(version: str | None) -> bool:
    """Lenient reads 'FROM scratch' as package 'from' version 'scratch': not taken."""
    return all(atom[0].isdigit() or atom[0] == "*" for atom in _CONDA_VERSION_ATOM_RE.findall(version or ""))


def _conda_tokens(text: str) -> list[str]:
    return _CONDA_TOKEN_RE.findall(_CONDA_BRACKET_KEY_RE.sub(" ", text).lower())


def _first_line(exc) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _normalize(field_name: str, line: str, allowed_channels) -> tuple[str, str]:
    if field_name == "apt":
        return normalize_apt(line)
    if field_name == "pip":
        return normalize_pip(line)
    return normalize_conda(line, allowed_channels)


def _numbered_lines(field_name: str, value, errors: list[FieldError]):
    """(line number, content) from textarea text or an API list of strings.

    A list entry is one line: its number is its position (1-based), and an entry
    that is not a string or holds a line break is reported rather than split.
    """
    if value is None or isinstance(value, str):
        yield from iter_package_lines(value or "")
        return
    if not isinstance(value, (list, tuple)):
        errors.append(FieldError(field_name, "Expected text or a list of strings."))
        return
    for number, entry in enumerate(value, 1):
        if not isinstance(entry, str):
            errors.append(FieldError(field_name, "Each entry must be a string.", number, repr(entry)))
        elif _LINE_BREAK_RE.search(entry):
            errors.append(
                FieldError(field_name, "One package per entry; line breaks are not allowed.", number, entry)
            )
        elif content := _package_content(entry):
            yield number, content


def validate_package_lines(field_name: str, text, allowed_channels=()):
    """(sorted normalised lines, errors) for one package field (text or list of strings)."""
    accepted: dict[str, str] = {}
    seen: dict[str, int] = {}
    errors: list[FieldError] = []
    for number, line in _numbered_lines(field_name, text, errors):
        try:
            normalized, key = _normalize(field_name, line, allowed_channels)
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


def _text_field(data: dict, key: str, errors: list[FieldError]) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.append(FieldError(key, "Expected a string."))
        return ""
    return value.strip()


def validate_spec(data: dict, *, allowed_channels=(), check_name=True) -> ValidationResult:
    """Validate a whole spec; ``data`` holds name, base_image, pull_secret, apt, pip, conda.

    Package fields may be textarea text (the page) or lists of strings (the API).
    """
    errors: list[FieldError] = []
    name = _text_field(data, "name", errors)
    base_image = _text_field(data, "base_image", errors)
    pull_secret = _text_field(data, "pull_secret", errors) or None
    typed_wrong = {e.field for e in errors}
    if check_name and "name" not in typed_wrong:
        errors += [FieldError("name", m) for m in validate_name(name)]
    if "base_image" not in typed_wrong:
        errors += [FieldError("base_image", m) for m in validate_image_reference(base_image)]
    lists = {}
    for field_name in PACKAGE_FIELDS:
        lists[field_name], field_errors = validate_package_lines(
            field_name, data.get(field_name), allowed_channels
        )
        errors += field_errors
    spec = SpecInput(name=name, base_image=base_image, pull_secret=pull_secret, **lists)
    return ValidationResult(spec=None if errors else spec, errors=errors)
