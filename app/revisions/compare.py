"""Compare two revisions of a spec: what the admin changed (spec fields, Containerfile)
and what the images hold (installed packages, base digest, size).

``diff_spec``, ``diff_containerfiles`` and ``diff_packages`` are pure, tested with tables
of cases; ``compare_revisions`` reads the two jobs and their manifests. A revision whose
job has no manifest is still compared on everything else: ``packages`` is then None and
``packages_unavailable`` names it (docs/API.md, "Compare two revisions").
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import select

from ..extensions import db
from ..models import MAX_INTEGER, BuildJob, ImageSpec
from .manifest import MANAGERS, has_manifest, no_manifest_reason, package_versions

# The snapshot fields an admin edits, in the form's order; lists default to [], the rest to None.
SPEC_FIELDS = ("base_image", "pull_secret", "apt", "pip", "conda", "test_command")
LIST_FIELDS = ("apt", "pip", "conda")


class RevisionNotFound(Exception):
    """No job of the spec has that revision; the message names it."""


def parse_revision(raw: str | None) -> int:
    """A revision number from a query parameter; ValueError with the reason otherwise."""
    if raw is None or raw.strip() == "":
        raise ValueError(_("A revision number is required."))
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(_("Must be a revision number (an integer).")) from None
    if not 1 <= value <= MAX_INTEGER:
        raise ValueError(_("Must be between 1 and %(max)d.", max=MAX_INTEGER))
    return value


def _field(snapshot: dict, name: str):
    value = (snapshot or {}).get(name)
    if name in LIST_FIELDS:
        return list(value or [])
    return value if value not in ("", None) else None


def diff_spec(from_snapshot: dict, to_snapshot: dict) -> list[dict]:
    """The fields whose value differs, each with both values whole."""
    changes = []
    for name in SPEC_FIELDS:
        before, after = _field(from_snapshot, name), _field(to_snapshot, name)
        if before != after:
            changes.append({"field": name, "from": before, "to": after})
    return changes


def diff_containerfiles(before: str, after: str, from_label: str, to_label: str) -> str:
    """A unified diff ('' when they are the same)."""
    lines = difflib.unified_diff(
        (before or "").splitlines(), (after or "").splitlines(), fromfile=from_label, tofile=to_label, lineterm=""
    )
    text = "\n".join(lines)
    return text + "\n" if text else ""


def _versions(packages) -> dict[tuple[str, str], str]:
    """(manager, name) -> version; a name installed twice (two architectures, two site
    directories) shows its versions joined."""
    seen: dict[tuple[str, str], set[str]] = {}
    for manager, name, version in packages:
        seen.setdefault((manager, name), set()).add(version)
    return {key: ", ".join(sorted(versions)) for key, versions in seen.items()}


def _order(key: tuple[str, str]):
    manager, name = key
    return (MANAGERS.index(manager) if manager in MANAGERS else len(MANAGERS), name.lower(), name)


def diff_packages(from_packages, to_packages) -> dict:
    """Added, removed and changed packages between two manifests of (manager, name, version)."""
    before, after = _versions(from_packages), _versions(to_packages)
    added = [{"manager": m, "name": n, "version": after[(m, n)]} for m, n in sorted(after.keys() - before.keys(), key=_order)]
    removed = [{"manager": m, "name": n, "version": before[(m, n)]} for m, n in sorted(before.keys() - after.keys(), key=_order)]
    changed = [
        {"manager": m, "name": n, "from": before[(m, n)], "to": after[(m, n)]}
        for m, n in sorted(before.keys() & after.keys(), key=_order)
        if before[(m, n)] != after[(m, n)]
    ]
    return {"added": added, "removed": removed, "changed": changed}


@dataclass
class Comparison:
    from_job: BuildJob
    to_job: BuildJob
    spec: list[dict]
    containerfile_diff: str
    packages: dict | None
    packages_unavailable: list[dict]

    def as_json(self) -> dict:
        return {
            "from": self.from_job.revision,
            "to": self.to_job.revision,
            "spec": self.spec,
            "containerfile_diff": self.containerfile_diff,
            "packages": self.packages,
            "packages_unavailable": self.packages_unavailable,
            "base_digest": {"from": self.from_job.base_digest, "to": self.to_job.base_digest},
            "size_bytes": {"from": self.from_job.size_bytes, "to": self.to_job.size_bytes},
        }


def revision_job(spec: ImageSpec, revision: int) -> BuildJob:
    job = db.session.scalar(select(BuildJob).where(BuildJob.spec_id == spec.id, BuildJob.revision == revision))
    if job is None:
        raise RevisionNotFound(_("%(name)s has no revision %(revision)d.", name=spec.name, revision=revision))
    return job


def compare_revisions(spec: ImageSpec, from_revision: int, to_revision: int) -> Comparison:
    """RevisionNotFound when either revision does not exist."""
    before, after = revision_job(spec, from_revision), revision_job(spec, to_revision)
    snap_before, snap_after = before.spec_snapshot or {}, after.spec_snapshot or {}
    unavailable = [
        {"revision": job.revision, "reason": no_manifest_reason(job)}
        for job in dict.fromkeys((before, after))
        if not has_manifest(job)
    ]
    packages = None
    if not unavailable:
        packages = diff_packages(package_versions(before), package_versions(after))
    return Comparison(
        from_job=before,
        to_job=after,
        spec=diff_spec(snap_before, snap_after),
        containerfile_diff=diff_containerfiles(
            snap_before.get("containerfile", ""),
            snap_after.get("containerfile", ""),
            f"r{before.revision}/Containerfile",
            f"r{after.revision}/Containerfile",
        ),
        packages=packages,
        packages_unavailable=unavailable,
    )


def previous_revision(job: BuildJob) -> int | None:
    """The revision before `job`'s that still has a job (retention may have pruned some)."""
    return db.session.scalar(
        select(BuildJob.revision)
        .where(BuildJob.spec_id == job.spec_id, BuildJob.revision < job.revision)
        .order_by(BuildJob.revision.desc())
        .limit(1)
    )
