"""Pin a spec to exactly what one succeeded job installed.

``pin_lines`` is pure: the job's own package lines and its manifest in, pinned lines
out (apt ``name=version``, pip ``name[extras]==version; marker``, conda
``channel::name ==version``), with a note for each line the manifest cannot pin (an
apt virtual package such as ``awk``, a pip line whose marker is false in the image):
those stay as written. ``pin_base`` puts the base image's registry digest on its
reference. ``pin_spec`` saves the pinned spec as an edit, validated like any other,
which starts a new job with the trigger ``pinned``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from flask_babel import gettext as _
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from rattler import MatchSpec

from ..i18n import stored as said
from ..i18n.labels import status_label
from ..models import BuildJob, ImageSpec, JobStatus, Trigger
from ..specs.service import JobTrigger, SaveOutcome, spec_input_from_row, update_spec
from ..specs.validation import PACKAGE_FIELDS
from .manifest import has_manifest, no_manifest_reason, package_versions


class PinRefused(Exception):
    """The job cannot be pinned to (not succeeded, no manifest, no base digest); the message says why."""


@dataclass(frozen=True)
class PinNote:
    field: str
    line: str
    reason: str

    def as_dict(self):
        return {"field": self.field, "line": self.line, "reason": self.reason}


def _apt(line: str, installed: dict[str, str]) -> tuple[str | None, str]:
    name = line.split("=", 1)[0].split("/", 1)[0]
    version = installed.get(name)
    if version is None:
        return None, _("dpkg lists no package %(name)s (a virtual package is provided by another one); "
                       "kept as written.", name=repr(name))
    return f"{name}={version}", ""


def _pip(line: str, installed: dict[str, str]) -> tuple[str | None, str]:
    req = Requirement(line)
    name = canonicalize_name(req.name)
    version = installed.get(name)
    if version is None:
        if req.marker:
            return None, _("%(name)s is not installed (its marker is false in this image); kept as written.", name=name)
        return None, _("%(name)s is not installed (pip lists no such distribution); kept as written.", name=name)
    text = name
    if req.extras:
        text += "[" + ",".join(sorted(canonicalize_name(e) for e in req.extras)) + "]"
    text += f"=={version}"
    if req.marker:
        text += f"; {req.marker}"
    return text, ""


def _conda(line: str, installed: dict[str, str]) -> tuple[str | None, str]:
    name = MatchSpec(line).name.normalized
    version = installed.get(name)
    if version is None:
        return None, _("conda lists no package %(name)s in the environment; kept as written.", name=repr(name))
    channel = line.split("::", 1)[0] + "::" if "::" in line else ""
    return str(MatchSpec(f"{channel}{name}=={version}")), ""


_PINNERS = {"apt": _apt, "pip": _pip, "conda": _conda}


def _installed(manifest, manager: str) -> dict[str, str]:
    names = {}
    for row_manager, name, version in manifest:
        if row_manager == manager:
            names[canonicalize_name(name) if manager == "pip" else name] = version
    return names


def pin_lines(lines: dict[str, list[str]], manifest) -> tuple[dict[str, list[str]], list[PinNote]]:
    """Each package field's lines pinned to the manifest's (manager, name, version) rows;
    the lines that stay as written, with why."""
    pinned, notes = {}, []
    for field in PACKAGE_FIELDS:
        installed = _installed(manifest, field)
        pinned[field] = []
        for line in lines.get(field) or []:
            text, reason = _PINNERS[field](line, installed)
            if text is None:
                notes.append(PinNote(field, line, reason))
            pinned[field].append(text or line)
    return pinned, notes


def pin_base(base_image: str, base_digest: str | None) -> str:
    """`repo:tag@sha256:...`; PinRefused when the base has no registry digest."""
    if base_image.startswith("localhost/"):
        raise PinRefused(_("The base image %(image)s is a local image (localhost/): it has no registry "
                           "digest to pin. Pin the packages without the base.", image=base_image))
    if not base_digest or not base_digest.startswith("sha256:"):
        raise PinRefused(_("No registry digest was recorded for the base image %(image)s of this build. "
                           "Pin the packages without the base.", image=base_image))
    return f"{base_image.split('@', 1)[0]}@{base_digest}"


@dataclass
class PinOutcome:
    save: SaveOutcome
    data: dict
    notes: list[PinNote]


def pin_spec(spec: ImageSpec, job: BuildJob, *, base: bool, user: str | None) -> PinOutcome:
    """Save `spec` as `job` built it, each package line pinned to what `job` installed
    (and its base by digest with `base`). The job's own spec lines are the ones pinned:
    pinning an older revision brings its lines back. PinRefused when `job` did not
    succeed or has no manifest; the outcome's errors when the pinned spec is invalid."""
    if job.status != JobStatus.SUCCEEDED:
        raise PinRefused(_("r%(revision)d %(status)s; only a succeeded revision can be pinned.",
                           revision=job.revision, status=status_label(job.status)))
    if not has_manifest(job):
        raise PinRefused(no_manifest_reason(job))
    snapshot = job.spec_snapshot or {}
    current = asdict(spec_input_from_row(spec))
    data = {**current, **{key: snapshot[key] for key in current if key in snapshot and key != "name"}}
    pinned, notes = pin_lines({field: data.get(field) or [] for field in PACKAGE_FIELDS}, package_versions(job))
    data.update(pinned)
    if base:
        data["base_image"] = pin_base(data["base_image"], job.base_digest)
    detail = (said.PINNED_BASE_DETAIL if base else said.PINNED_DETAIL) % {"revision": job.revision}
    save = update_spec(spec, data, JobTrigger(Trigger.PINNED, user, detail))
    return PinOutcome(save, data, notes)
