"""Images outside the database: what a deleted spec leaves behind, and disk upkeep.

- A deleted spec's images: its local tags in Podman's storage (``<REGISTRY>/<name>:*``),
  its pushed tags in the registry (only when the admin asks), its RQ entries.
- Pruning on a schedule: builds keep every step as an image (``layers=True``), so the next
  build of a spec reuses its APT and conda layers, and the disk fills. Removing an image by
  name only untags it while it has other names; once its last name goes, Podman removes
  its step images too, up to the first one another image builds on. So pruning keeps, per
  spec, the images of its newest jobs and ``latest`` (with them their step images, the
  cache the next build reuses) and removes the older tags. Untagged leftovers (the last
  steps of a failed or stopped build) go once older than IMAGE_DANGLING_KEEP_HOURS, so a
  build running right now, or retried soon after a failure, keeps its layers.
"""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field

import click
from flask import current_app
from podman import PodmanClient
from podman.errors import APIError, ImageNotFound
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from sqlalchemy import func, select

from ..extensions import db
from ..models import BuildJob, ImageSpec, JobStatus
from ..ops.logging import kv
from ..revisions import active as active_revision
from . import prefetch
from .cache import cache_repository
from .queue import build_queue, redis_connection, rq_job_id
from .registry import ImageRef, RegistryClient, RegistryError

log = logging.getLogger(__name__)

PRUNE_LOCK_KEY = "imagebuilder:prune-images:{host}:{podman}:{registry}"


@dataclass
class LocalImage:
    """One name of an image in Podman's storage under ``<REGISTRY>/``."""

    name: str  # the full reference, e.g. 127.0.0.1:5000/imagebuilder/demo:r3-1a2b3c4d
    spec: str
    tag: str
    image_id: str


@dataclass
class PruneSummary:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    dangling_removed: int = 0
    space_reclaimed_bytes: int = 0
    disk_before: dict = field(default_factory=dict)
    disk_after: dict = field(default_factory=dict)


# -- Podman storage ---------------------------------------------------------------------


def podman_client() -> PodmanClient:
    return PodmanClient(base_url=current_app.config["PODMAN_URL"], timeout=120)


def build_images(client: PodmanClient) -> list[LocalImage]:
    """Every name under ``<REGISTRY>/<spec>:`` in local storage (other images, base images
    among them, are never listed here)."""
    prefix = current_app.config["REGISTRY"] + "/"
    found = []
    for image in client.images.list():
        for name in image.attrs.get("Names") or image.attrs.get("RepoTags") or []:
            if not name.startswith(prefix):
                continue
            spec, _, tag = name[len(prefix):].rpartition(":")
            if spec and "/" not in spec and tag:
                found.append(LocalImage(name, spec, tag, image.id))
    return found


def remove_local_images(spec_name: str) -> list[str]:
    """Remove the spec's tags from the build host's storage; the names removed.

    By name and without force: an image that another spec's tag shares (identical
    inputs build identical images) only loses this spec's name."""
    client = podman_client()
    try:
        removed = []
        for image in build_images(client):
            if image.spec == spec_name and _remove(client, image.name):
                removed.append(image.name)
        return removed
    finally:
        client.close()


def _remove(client: PodmanClient, name: str) -> bool:
    """False when the name was already gone; APIError when Podman refuses (e.g. 409: a
    container uses the image)."""
    try:
        client.images.remove(name)
    except ImageNotFound:
        return False
    return True


def disk_usage(client: PodmanClient) -> dict:
    """``podman system df`` figures for images and containers."""
    df = client.df()
    images = df.get("Images") or []
    containers = df.get("Containers") or []
    return {
        "images": len(images),
        "images_active": sum(1 for i in images if i.get("Containers")),
        "images_unique_bytes": sum(int(i.get("UniqueSize") or 0) for i in images),
        "images_reclaimable_bytes": sum(int(i.get("UniqueSize") or 0) for i in images if not i.get("Containers")),
        "containers": len(containers),
        "containers_bytes": sum(int(c.get("RWSize") or 0) for c in containers),
    }


def prune_images(keep_recent: int | None = None, dangling_keep_hours: float | None = None) -> PruneSummary:
    """Remove build images beyond each spec's newest `keep_recent` jobs, then untagged
    images older than `dangling_keep_hours`. Raises APIError (or a connection error) when
    Podman cannot be asked."""
    config = current_app.config
    keep_recent = config["IMAGE_KEEP_RECENT"] if keep_recent is None else keep_recent
    hours = config["IMAGE_DANGLING_KEEP_HOURS"] if dangling_keep_hours is None else dangling_keep_hours
    keep = _tags_to_keep(keep_recent)
    protected = _base_images()
    summary = PruneSummary()
    client = podman_client()
    try:
        summary.disk_before = disk_usage(client)
        for image in build_images(client):
            if image.tag in keep.get(image.spec, ()) or image.name in protected:
                summary.kept.append(image.name)
                continue
            try:
                if _remove(client, image.name):
                    summary.removed.append(image.name)
            except APIError as exc:
                summary.in_use.append(image.name)
                log.info("event=image_not_removed image=%s reason=%s", image.name, kv(_explain(exc)))
        pruned = client.images.prune(filters={"dangling": True, "until": f"{int(hours * 3600)}s"})
        summary.dangling_removed = len(pruned.get("ImagesDeleted") or [])
        summary.space_reclaimed_bytes = int(pruned.get("SpaceReclaimed") or 0)
        summary.disk_after = disk_usage(client)
    finally:
        client.close()
    db.session.commit()  # end the read transaction
    after = summary.disk_after
    log.info(
        "event=images_pruned removed=%d kept=%d in_use=%d dangling_removed=%d space_reclaimed_bytes=%d "
        "images=%d images_unique_bytes=%d images_reclaimable_bytes=%d containers=%d before_unique_bytes=%d",
        len(summary.removed), len(summary.kept), len(summary.in_use), summary.dangling_removed,
        summary.space_reclaimed_bytes, after["images"], after["images_unique_bytes"],
        after["images_reclaimable_bytes"], after["containers"], summary.disk_before["images_unique_bytes"],
    )
    return summary


def _tags_to_keep(keep_recent: int) -> dict[str, set[str]]:
    """Per spec name: the tags of its newest `keep_recent` jobs, of its queued and running
    jobs, of its active revision, of its latest succeeded job, and ``latest``. A spec not
    in the database keeps nothing; the shared cache repository, when it is under
    REGISTRY, keeps the tags this host fetched ahead."""
    rank = func.row_number().over(partition_by=BuildJob.spec_id, order_by=BuildJob.revision.desc()).label("rank")
    ranked = select(BuildJob.id, BuildJob.spec_id, BuildJob.status, rank).subquery()
    latest_succeeded = select(func.max(BuildJob.id)).where(BuildJob.status == JobStatus.SUCCEEDED).group_by(
        BuildJob.spec_id
    )
    kept_ids = select(ranked.c.id).where(
        (ranked.c.rank <= keep_recent)
        | ranked.c.status.in_(JobStatus.ACTIVE)
        | ranked.c.id.in_(latest_succeeded)
        | ranked.c.id.in_(active_revision.active_job_ids())
    )
    rows = db.session.execute(
        select(ImageSpec.name, BuildJob.revision, BuildJob.input_hash)
        .join(BuildJob, BuildJob.spec_id == ImageSpec.id)
        .where(BuildJob.id.in_(kept_ids))
    ).all()
    keep = {name: {"latest"} for name in db.session.scalars(select(ImageSpec.name))}
    for name, revision, digest in rows:
        keep[name].add(f"r{revision}-{digest}")
    # The shared cache's images fetched ahead for the next builds (app/builds/prefetch.py).
    config = current_app.config
    prefix, repository = config["REGISTRY"] + "/", cache_repository(config)
    if repository.startswith(prefix) and "/" not in repository[len(prefix):]:
        keep.setdefault(repository[len(prefix):], set()).update(prefetch.kept_keys())
    return keep


def _base_images() -> set[str]:
    """Base images the catalogue names, as full references: a spec may build on another
    spec's pushed image, which must stay for it."""
    refs = set()
    for base in db.session.scalars(select(ImageSpec.base_image).distinct()):
        last = base.rsplit("/", 1)[-1]
        refs.add(base if ":" in last or "@" in last else f"{base}:latest")
    return refs


def _explain(exc: APIError) -> str:
    return str(getattr(exc, "explanation", None) or exc).splitlines()[0]


# -- the registry -----------------------------------------------------------------------


def registry_client(host: str) -> RegistryClient:
    config = current_app.config
    return RegistryClient(
        host,
        config.get("REGISTRY_USERNAME"),
        config.get("REGISTRY_PASSWORD"),
        tls_verify=bool(config["REGISTRY_TLS_VERIFY"]),
    )


def delete_pushed_images(spec_name: str) -> tuple[list[str], list[str]]:
    """Delete every tag of the spec's repository from the registry (HTTP API v2).

    Returns (tags deleted, errors). A tag already gone counts as deleted; several tags on
    one digest go with its first delete."""
    ref = ImageRef.parse(f"{current_app.config['REGISTRY']}/{spec_name}:latest")
    client = registry_client(ref.host)
    try:
        tags = client.tags(ref.repository)
    except RegistryError as exc:
        return [], [f"listing the tags of {ref.host}/{ref.repository}: {exc}"]
    deleted, errors = [], []
    for tag in tags:
        try:
            client.delete_tag(ref.repository, tag)
            deleted.append(tag)
        except RegistryError as exc:
            errors.append(f"{ref.host}/{ref.repository}:{tag}: {exc}")
    return deleted, errors


# -- Redis ------------------------------------------------------------------------------


def forget_rq_jobs(job_ids: list[int]) -> int:
    """Delete the RQ entries (queue, registries, job hash, results) of build jobs whose
    rows are gone; how many existed. Redis errors are logged: the hashes expire on their
    own, and a queued one finds no row and does nothing."""
    queue = build_queue()
    found = 0
    try:
        for job_id in job_ids:
            try:
                RQJob.fetch(rq_job_id(job_id), connection=queue.connection, serializer=queue.serializer).delete()
                found += 1
            except NoSuchJobError:
                continue
    except RedisError as exc:
        log.warning("event=forget_rq_jobs_failed jobs=%s error=%s", kv(job_ids), kv(exc))
    return found


def rq_job_running(job_id: int) -> bool:
    """True while RQ still counts the job as started (its worker has not finished it)."""
    queue = build_queue()
    try:
        rq_job = RQJob.fetch(rq_job_id(job_id), connection=queue.connection, serializer=queue.serializer)
        return rq_job.get_status(refresh=False) == RQStatus.STARTED
    except NoSuchJobError:
        return False
    except RedisError as exc:
        log.warning("job=%s event=rq_status_unknown error=%s", job_id, kv(exc))
        return False


# -- the schedule -----------------------------------------------------------------------

_next_run = 0.0


def run_maintenance(app) -> PruneSummary | None:
    """Prune images when IMAGE_PRUNE_INTERVAL has passed; meant for the worker's periodic
    loop (app/ops/reconcile.py run_periodically), called on each of its passes.

    One worker per build host, Podman service and registry namespace prunes per interval
    (a Redis lock held for the interval). Never raises: a Podman that does not answer is
    logged and tried again next interval."""
    global _next_run
    now = time.monotonic()
    if now < _next_run:
        return None
    interval = int(app.config["IMAGE_PRUNE_INTERVAL"])
    _next_run = now + interval
    with app.app_context():
        key = PRUNE_LOCK_KEY.format(
            host=socket.gethostname(), podman=app.config["PODMAN_URL"], registry=app.config["REGISTRY"]
        )
        try:
            if not redis_connection().set(key, "1", nx=True, ex=max(interval - 1, 1)):
                return None
        except RedisError as exc:
            log.warning("event=prune_lock_unavailable error=%s", kv(exc))  # pruning twice does no harm
        try:
            return prune_images()
        except Exception as exc:  # the loop that calls this must keep running
            db.session.rollback()
            log.warning("event=images_prune_failed error=%s", kv(f"{type(exc).__name__}: {exc}"))
            return None


def register_cli(app):
    @app.cli.command("prune-images")
    @click.option("--keep-recent", type=int, default=None,
                  help="Images kept per spec, newest jobs first (IMAGE_KEEP_RECENT).")
    @click.option("--dangling-keep-hours", type=float, default=None,
                  help="Untagged images younger than this stay (IMAGE_DANGLING_KEEP_HOURS).")
    def prune_images_command(keep_recent, dangling_keep_hours):
        """Remove old build images and untagged layers from the build host's Podman storage."""
        summary = prune_images(keep_recent=keep_recent, dangling_keep_hours=dangling_keep_hours)
        for name in summary.removed:
            click.echo(f"removed {name}")
        for name in summary.in_use:
            click.echo(f"in use, kept {name}")
        click.echo(f"kept {len(summary.kept)} build image name(s); removed {summary.dangling_removed} untagged "
                   f"image(s), {summary.space_reclaimed_bytes} bytes")
        for label, figures in (("before", summary.disk_before), ("after", summary.disk_after)):
            click.echo(f"{label}: " + " ".join(f"{k}={v}" for k, v in figures.items()))
