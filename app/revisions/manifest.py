"""Reading a job's installed-package manifest: the ``JobPackage`` rows the verify step
(``app.builds.verify``) writes, with the OS and user it found on the job row.

A job has a manifest once ``packages_count`` is set (None until then). The job page's
Packages section, its API, the SBOM, compare and pin read it through this module.
"""
from __future__ import annotations

from collections import Counter

from flask_babel import gettext as _
from sqlalchemy import select

from ..extensions import db
from ..i18n.labels import status_label
from ..models import MAX_INTEGER, BuildJob, JobPackage, JobStatus

MANAGERS = ("apt", "pip", "conda")
# The largest id or revision an INTEGER column holds (SQLite and PostgreSQL alike).


class NoManifest(Exception):
    """The job has no manifest (yet); the message says why, for a page or a 404."""


def find_job(job_id: int) -> BuildJob | None:
    """The job with this id; None for an unknown id, also one no INTEGER column holds."""
    return db.session.get(BuildJob, job_id) if 0 < job_id <= MAX_INTEGER else None


def has_manifest(job: BuildJob) -> bool:
    return job.packages_count is not None


def no_manifest_reason(job: BuildJob) -> str:
    who = {"id": job.id, "name": job.spec.name, "revision": job.revision, "status": status_label(job.status)}
    if job.status in JobStatus.ACTIVE:
        return _("Job %(id)d (%(name)s r%(revision)d) has no package manifest yet: it is %(status)s, and the "
                 "manifest is collected after the build, before the push.", **who)
    if job.status == JobStatus.SUCCEEDED:
        return _("Job %(id)d (%(name)s r%(revision)d) has no package manifest: it was built before manifests "
                 "were collected.", **who)
    return _("Job %(id)d (%(name)s r%(revision)d) has no package manifest: it ended %(status)s before its image "
             "was verified.", **who)


def job_packages(job: BuildJob) -> list[JobPackage]:
    """The manifest in reading order (apt, pip, conda; by name). NoManifest without one."""
    if not has_manifest(job):
        raise NoManifest(no_manifest_reason(job))
    rows = db.session.scalars(select(JobPackage).where(JobPackage.job_id == job.id)).all()
    return sorted(rows, key=package_order)


def package_versions(job: BuildJob) -> list[tuple[str, str, str]]:
    """(manager, name, version) of each package of the manifest, for compare and pin."""
    return [tuple(row) for row in db.session.execute(
        select(JobPackage.manager, JobPackage.name, JobPackage.version).where(JobPackage.job_id == job.id)
    )]


def package_order(package) -> tuple:
    manager = MANAGERS.index(package.manager) if package.manager in MANAGERS else len(MANAGERS)
    return manager, package.name.lower(), package.name, package.version


def manager_counts(packages) -> dict[str, int]:
    """Packages per manager, every manager listed (0 when it has none)."""
    counts = Counter(p.manager for p in packages)
    return {manager: counts.get(manager, 0) for manager in MANAGERS}


def packages_json(job: BuildJob, packages: list[JobPackage]) -> dict:
    return {
        "job": job.id,
        "os": job.os_name,
        "user": job.image_user,
        "packages": [
            {"manager": p.manager, "name": p.name, "version": p.version, "requested": bool(p.requested)}
            for p in packages
        ],
    }
