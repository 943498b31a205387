"""Rows to JSON. Keys are the API's contract (docs/API.md, openapi.yaml)."""
from __future__ import annotations

from datetime import datetime, timezone

from ..models import BuildJob, ImageSpec, RegistryCredential


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with a 'Z'; the database keeps naive UTC times."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def spec_json(spec: ImageSpec, latest: BuildJob | None, succeeded: BuildJob | None) -> dict:
    return {
        "name": spec.name,
        "base_image": spec.base_image,
        "pull_secret": spec.pull_secret.name if spec.pull_secret else None,
        "apt": list(spec.apt or []),
        "pip": list(spec.pip or []),
        "conda": list(spec.conda or []),
        "created_at": iso(spec.created_at),
        "updated_at": iso(spec.updated_at),
        "status": latest.status if latest else None,
        "image": succeeded.image if succeeded else None,
    }


def job_json(job: BuildJob, *, with_snapshot: bool = False) -> dict:
    data = {
        "id": job.id,
        "spec": job.spec.name,
        "revision": job.revision,
        "hash": job.input_hash,
        "tag": job.tag,
        "status": job.status,
        "progress": job.progress,
        "image": job.image,
        "digest": job.digest,
        "error": job.error,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "updated_at": iso(job.updated_at),
    }
    if with_snapshot:
        data["spec_snapshot"] = job.spec_snapshot
    return data


def credential_json(cred: RegistryCredential) -> dict:
    """The password is write-only: it is never part of any answer."""
    return {
        "name": cred.name,
        "registry": cred.registry_host,
        "username": cred.username,
        "created_at": iso(cred.created_at),
        "updated_at": iso(cred.updated_at),
    }
