"""Validation and normalisation of everything an admin types into an image spec.

Pure functions, no Flask: the page, the JSON API and the build all call
``validate_spec``. Messages go through Flask-Babel's ``gettext``: in the language of the
request being answered, English outside one (the build, plain function calls). Every line is either accepted in a normalised form or reported
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

from flask_babel import gettext as _
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from rattler import MatchSpec, Subdir

PACKAGE_FIELDS = ("apt", "pip", "conda")
NAME_MAX_LENGTH = 128
LINE_MAX_LENGTH = 500
TEST_COMMAND_MAX_LENGTH = 1000
# The default of MAX_PACKAGE_LINES: lines per package field, comments and blank lines included.
PACKAGE_LINES_MAX = 300
# The base_image column; a reference's parts alone could add up to more.
IMAGE_REFERENCE_MAX_LENGTH = 512
PULL_SECRET_MAX_LENGTH = 128

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
# What a build string is made of (py38h1234567_0, *_cpython), as rattler's strict
# parser reads a third word; it would keep any quoted text in [build="..."] as one.
_CONDA_BUILD_RE = re.compile(r"[A-Za-z0-9_*]+")
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
    # Run in the built image with /bin/sh -c as its user (app/builds/verify.py); None: none.
    test_command: str | None = None


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
        return [_("A name is required.")]
    if len(name) > NAME_MAX_LENGTH:
        return [_too_long(name, NAME_MAX_LENGTH)]
    bad = sorted({c for c in name if not re.fullmatch(r"[a-z0-9._-]", c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        if name.lower() != name and not validate_name(name.lower()):
            return [_("Only lowercase letters, digits, '.', '-' and '_' are allowed (found %(found)s). "
                      "Did you mean %(suggestion)s?", found=shown, suggestion=repr(name.lower()))]
        return [_("Only lowercase letters, digits, '.', '-' and '_' are allowed (found %(found)s).", found=shown)]
    if not _NAME_RE.fullmatch(name):
        return [
            _("'.', '-' and '_' may only stand between letters or digits: no separator at the "
              "start or end, and no two in a row (the name becomes the image's registry path).")
        ]
    return []


def _too_long(text: str, limit: int) -> str:
    return _("At most %(limit)d characters (this one has %(length)d).", limit=limit, length=len(text))


def validate_image_reference(ref: str) -> list[str]:
    if not ref:
        return [_("A base image is required.")]
    if len(ref) > IMAGE_REFERENCE_MAX_LENGTH:
        return [_too_long(ref, IMAGE_REFERENCE_MAX_LENGTH)]
    if not _PRINTABLE_ASCII_RE.fullmatch(ref) or " " in ref:
        return [_("An image reference may not contain spaces, line breaks, control or non-ASCII characters.")]
    match = _REFERENCE_RE.fullmatch(ref)
    if not match:
        lowered = _with_lowercase_path(ref)
        if lowered != ref and _REFERENCE_RE.fullmatch(lowered):
            return [_("The repository path must be lowercase: did you mean %(suggestion)s?", suggestion=repr(lowered))]
        return [
            _("Not a valid image reference; expected [registry[:port]/]path[:tag][@sha256:digest], "
              "for example docker.io/library/debian:bookworm.")
        ]
    if len(match.group("name")) > _REFERENCE_NAME_MAX:
        return [_("The repository name is longer than %(limit)d characters.", limit=_REFERENCE_NAME_MAX)]
    algorithm, digest = match.group("algorithm"), match.group("hex")
    if algorithm is not None:
        expected = _DIGEST_HEX_LENGTHS.get(algorithm)
        if expected is None:
            return [_("Unsupported digest algorithm %(algorithm)s; use sha256.", algorithm=repr(algorithm))]
        if len(digest) != expected or digest != digest.lower():
            return [_("A %(algorithm)s digest is %(length)d lowercase hexadecimal characters.",
                      algorithm=algorithm, length=expected)]
    return []


def _with_lowercase_path(ref: str) -> str:
    host, rest = "", ref
    if _looks_like_registry(ref):
        host, _slash, rest = ref.partition("/")
        host += "/"
    path = re.split(r"[:@]", rest, maxsplit=1)[0]
    return host + path.lower() + rest[len(path):]


def _looks_like_registry(ref: str) -> bool:
    first, sep, _rest = ref.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost" or first.startswith("["))


def validate_test_command(command: str) -> list[str]:
    """One line of at most TEST_COMMAND_MAX_LENGTH printable characters ('' is no test).
    It runs only inside the built image, with /bin/sh -c, so any shell text is allowed."""
    if len(command) > TEST_COMMAND_MAX_LENGTH:
        return [_too_long(command, TEST_COMMAND_MAX_LENGTH)]
    if _LINE_BREAK_RE.search(command):
        return [_("One line only: join commands with && or ;.")]
    bad = next((c for c in command if not c.isprintable()), None)
    if bad is not None:
        return [_("Only printable characters are allowed; found %(char)s (tabs and control characters included).",
                  char=repr(bad))]
    return []


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
        raise LineInvalid(_("The line is too long (%(length)d characters, at most %(limit)d).",
                            length=len(line), limit=LINE_MAX_LENGTH))
    if _PRINTABLE_ASCII_RE.fullmatch(line):
        return
    bad = next(c for c in line if not _PRINTABLE_ASCII_RE.fullmatch(c))
    if bad.isascii():
        raise LineInvalid(_("Control characters such as %(char)s (tabs included) are not allowed.", char=repr(bad)))
    raise LineInvalid(_("Only ASCII characters are allowed; found %(char)s.", char=repr(bad)))


def normalize_apt(line: str) -> tuple[str, str]:
    """('name[=version|/release]', duplicate key) or LineInvalid."""
    _check_characters(line)
    if line.startswith("-"):
        raise LineInvalid(_("Options are not allowed, only package names."))
    if " " in line:
        raise LineInvalid(_("One package per line; spaces are not allowed."))
    name, version, release = line, None, None
    if "=" in line:
        name, _equals, version = line.partition("=")
    elif "/" in line:
        name, _slash, release = line.partition("/")
    if not _APT_NAME_RE.fullmatch(name):
        if name.lower() != name and _APT_NAME_RE.fullmatch(name.lower()):
            raise LineInvalid(_("Debian package names are lowercase: did you mean %(suggestion)s?",
                                suggestion=repr(name.lower())))
        if ":" in name and _APT_NAME_RE.fullmatch(name.partition(":")[0]):
            raise LineInvalid(_("Architecture qualifiers (name:arch) are not supported; "
                                "the image's own architecture is used."))
        raise LineInvalid(
            _("%(name)s is not a Debian package name (lowercase letters, digits, '+', '-', '.'; "
              "at least two characters, starting with a letter or digit).", name=repr(name))
        )
    if version is not None:
        if not version:
            raise LineInvalid(_("A version is required after '='."))
        if not _APT_VERSION_RE.fullmatch(version):
            raise LineInvalid(_("%(version)s is not a Debian version ([epoch:]upstream[-revision]).",
                                version=repr(version)))
        return f"{name}={version}", name
    if release is not None:
        if not _APT_RELEASE_RE.fullmatch(release):
            raise LineInvalid(_("%(release)s is not a release name (for example bookworm-backports).",
                                release=repr(release)))
        return f"{name}/{release}", name
    return name, name


def normalize_pip(line: str) -> tuple[str, str]:
    """A PEP 508 requirement in canonical form, or LineInvalid."""
    _check_characters(line)
    if line.startswith("-"):
        raise LineInvalid(_pip_option_reason(line.split()[0].split("=")[0]))
    if "://" in line.split(";")[0].split("@")[0] or line.startswith((".", "/", "~")):
        raise LineInvalid(_("URLs and paths are not allowed; name a package from the index (for example requests>=2)."))
    try:
        req = Requirement(line)
    except InvalidRequirement as exc:
        # packaging's own reason, in English
        raise LineInvalid(_("Not a valid requirement (PEP 508): %(reason)s", reason=str(exc).splitlines()[0])) from None
    if req.url:
        raise LineInvalid(_("Direct URL references (name @ URL) are not allowed; name a package from the index."))
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
        return _("pip option %(option)s is not allowed here; package indexes are set by the operator "
                 "(PIP_INDEX_URL, PIP_EXTRA_INDEX_URLS).", option=option)
    if option in ("-r", "--requirement", "-c", "--constraint"):
        return _("pip option %(option)s is not allowed here; list the packages themselves, one per line.",
                 option=option)
    if option in ("-e", "--editable"):
        return _("Editable installs (-e) are not allowed; name a package from the index.")
    return _("pip options such as %(option)s are not allowed here, only requirements (for example requests>=2).",
             option=option)


def normalize_conda(line: str, allowed_channels=()) -> tuple[str, str]:
    """A conda MatchSpec in rattler's canonical form, or LineInvalid."""
    _check_characters(line)
    if line.startswith("-"):
        raise LineInvalid(_("Options are not allowed, only package specs."))
    if "#" in line:
        # rattler, like conda, would cut the line at '#' without a word.
        raise LineInvalid(_("'#' may only start a comment, after a space (numpy  # why)."))
    spec = _parse_match_spec(line)
    if spec.name is None:
        raise LineInvalid(_("A package name is required."))
    if spec.namespace is not None:
        raise LineInvalid(_("Namespaces (channel:namespace:name) are not supported; write channel::name."))
    if spec.build is not None and not _CONDA_BUILD_RE.fullmatch(str(spec.build)):
        raise LineInvalid(
            _("%(build)s is not a build string: letters, digits, '_' and '*' only "
              "(for example py311h1234567_0 or *_cpython).", build=repr(str(spec.build)))
        )
    text = str(spec)
    if _CONDA_URL_KEY_RE.search(text):
        raise LineInvalid(_("Package URLs (url=... or a package file URL) are not allowed; "
                            "name a package from a channel."))
    if spec.subdir is not None and spec.subdir not in _CONDA_SUBDIRS:
        raise LineInvalid(_("Unknown subdir %(subdir)s; expected a platform such as linux-64 or noarch.",
                            subdir=repr(spec.subdir)))
    if spec.channel is not None and spec.channel.base_url.startswith(_DEFAULT_CONDA_HOST):
        named = spec.channel.base_url[len(_DEFAULT_CONDA_HOST):]
        if not _CONDA_CHANNEL_NAME_RE.fullmatch(named):
            raise LineInvalid(
                _("A channel name may only contain letters, digits, '.', '_', '-' and '/' "
                  "(for example conda-forge or conda-forge/label/dev).")
            )
    elif spec.channel is not None:
        allowed = {c.rstrip("/") + "/" for c in allowed_channels}
        if spec.channel.base_url not in allowed:
            if spec.channel.base_url.startswith("file:"):
                raise LineInvalid(_("Local channels (file paths) are not allowed; "
                                    "use a named channel such as conda-forge."))
            raise LineInvalid(
                _("Channel URL %(url)s is not allowed; the operator can allow it in CONDA_ALLOWED_CHANNELS, "
                  "or use a named channel such as conda-forge.", url=_without_password(spec.channel.base_url))
            )
    if not _PRINTABLE_ASCII_RE.fullmatch(text) or text.startswith("-") or not _is_stable(spec):
        raise LineInvalid(_("This spec does not read back the same once normalised (%(text)s); write it plainly.",
                            text=repr(text)))
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
        # rattler's own reason, in English
        reason = _("Not a valid conda MatchSpec: %(reason)s", reason=_first_line(strict_error))
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


def _too_many_lines(value, max_lines: int) -> int | None:
    """The number of lines (textarea) or entries (API list) when over ``max_lines``."""
    if isinstance(value, str):
        count = len(_LINE_BREAK_RE.findall(value)) + 1
    elif isinstance(value, (list, tuple)):
        count = len(value)
    else:
        return None
    return count if count > max_lines else None


def _numbered_lines(field_name: str, value, errors: list[FieldError]):
    """(line number, content) from textarea text or an API list of strings.

    A list entry is one line: its number is its position (1-based), and an entry
    that is not a string or holds a line break is reported rather than split.
    """
    if value is None or isinstance(value, str):
        yield from iter_package_lines(value or "")
        return
    if not isinstance(value, (list, tuple)):
        errors.append(FieldError(field_name, _("Expected text or a list of strings.")))
        return
    for number, entry in enumerate(value, 1):
        if not isinstance(entry, str):
            errors.append(FieldError(field_name, _("Each entry must be a string."), number, repr(entry)))
        elif _LINE_BREAK_RE.search(entry):
            errors.append(
                FieldError(field_name, _("One package per entry; line breaks are not allowed."), number, entry)
            )
        elif content := _package_content(entry):
            yield number, content


def validate_package_lines(field_name: str, text, allowed_channels=(), max_lines=PACKAGE_LINES_MAX):
    """(sorted normalised lines, errors) for one package field (text or list of strings).

    A field over ``max_lines`` is one error and its lines are not read at all."""
    accepted: dict[str, str] = {}
    seen: dict[str, int] = {}
    errors: list[FieldError] = []
    count = _too_many_lines(text, max_lines)
    if count is not None:
        message = _("At most %(limit)d lines per package field (this one has %(count)d; the limit is "
                    "MAX_PACKAGE_LINES).", limit=max_lines, count=count)
        return [], [FieldError(field_name, message)]
    for number, line in _numbered_lines(field_name, text, errors):
        try:
            normalized, key = _normalize(field_name, line, allowed_channels)
        except LineInvalid as exc:
            errors.append(FieldError(field_name, str(exc), number, line))
            continue
        if key in seen:
            errors.append(
                FieldError(field_name, _("%(package)s is already listed on line %(line)d.", package=repr(key),
                                         line=seen[key]), number, line)
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
        errors.append(FieldError(key, _("Expected a string.")))
        return ""
    return value.strip()


def validate_spec(data: dict, *, allowed_channels=(), check_name=True, max_lines=PACKAGE_LINES_MAX) -> ValidationResult:
    """Validate a whole spec; ``data`` holds name, base_image, pull_secret, apt, pip, conda
    and test_command.

    Package fields may be textarea text (the page) or lists of strings (the API).
    """
    errors: list[FieldError] = []
    name = _text_field(data, "name", errors)
    base_image = _text_field(data, "base_image", errors)
    pull_secret = _text_field(data, "pull_secret", errors) or None
    if pull_secret and len(pull_secret) > PULL_SECRET_MAX_LENGTH:
        errors.append(FieldError("pull_secret", _("A credential name has at most %(limit)d characters.",
                                                  limit=PULL_SECRET_MAX_LENGTH)))
    test_command = _text_field(data, "test_command", errors)
    typed_wrong = {e.field for e in errors}
    if check_name and "name" not in typed_wrong:
        errors += [FieldError("name", m) for m in validate_name(name)]
    if "base_image" not in typed_wrong:
        errors += [FieldError("base_image", m) for m in validate_image_reference(base_image)]
    if "test_command" not in typed_wrong:
        errors += [FieldError("test_command", m) for m in validate_test_command(test_command)]
    lists = {}
    for field_name in PACKAGE_FIELDS:
        lists[field_name], field_errors = validate_package_lines(
            field_name, data.get(field_name), allowed_channels, max_lines
        )
        errors += field_errors
    spec = SpecInput(name=name, base_image=base_image, pull_secret=pull_secret, test_command=test_command or None,
                     **lists)
    return ValidationResult(spec=None if errors else spec, errors=errors)
