"""Rows to JSON. Keys are the API's contract (docs/API.md, openapi.yaml)."""
from __future__ import annotations

from datetime import datetime, timezone

from ..models import ApiToken, AuditEvent, BuildJob, ImageSpec, RegistryCredential


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with a 'Z'; the database keeps naive UTC times."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def spec_json(spec: ImageSpec, latest: BuildJob | None, active: BuildJob | None) -> dict:
    return {
        "name": spec.name,
        "base_image": spec.base_image,
        "pull_secret": spec.pull_secret.name if spec.pull_secret else None,
        "apt": list(spec.apt or []),
        "pip": list(spec.pip or []),
        "conda": list(spec.conda or []),
        "test_command": spec.test_command,
        "created_at": iso(spec.created_at),
        "updated_at": iso(spec.updated_at),
        "status": latest.status if latest else None,
        "image": active.image if active else None,
        "active_revision": spec.active_revision,
        "auto_activate": spec.auto_activate,
        "base_policy": spec.base_policy,
        "base_update_digest": spec.base_update_digest,
        "base_checked_at": iso(spec.base_checked_at),
        "base_check_error": spec.base_check_error,
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
        "packages_count": job.packages_count,
        "active": job.revision == job.spec.active_revision,
        "trigger": {"kind": job.trigger_kind, "user": job.trigger_user, "detail": job.trigger_detail},
        "base_digest": job.base_digest,
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


def token_json(row: ApiToken) -> dict:
    """Never the token itself: only its prefix (the whole token is in the create answer)."""
    return {
        "prefix": row.prefix,
        "name": row.name,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "last_used_at": iso(row.last_used_at),
    }


def audit_json(event: AuditEvent) -> dict:
    return {
        "id": event.id,
        "at": iso(event.created_at),
        "user": event.actor,
        "address": event.address,
        "action": event.action,
        "spec": event.spec,
        "target": event.target,
        "changes": event.changes or {},
    }
