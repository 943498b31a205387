"""Specs built on other specs. A base image ``<REGISTRY>/<parent>:<tag>`` (our own registry,
a spec's repository, a tag: ``latest`` or a revision tag) makes the spec that parent's child.
A base given by digest, or one whose repository is no spec, has no parent."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import BuildJob, ImageSpec
from ..revisions.active import active_job

FOLLOWED_TAG = "latest"


@dataclass(frozen=True)
class ParentRef:
    name: str
    tag: str


@dataclass
class Lineage:
    """What the spec page says: "Based on: <parent> r5", "Used as base by: x, y"."""

    parent: ImageSpec | None
    parent_revision: int | None  # the parent's revision the active build was built on
    children: list[ImageSpec]


def parent_ref(base_image: str, registry: str) -> ParentRef | None:
    """The spec name and tag a base image names in `registry`, or None (pure)."""
    prefix = registry.rstrip("/") + "/"
    if not base_image.startswith(prefix) or "@" in base_image:
        return None
    name, sep, tag = base_image[len(prefix):].partition(":")
    if not sep or not name or not tag or "/" in name:
        return None
    return ParentRef(name, tag)


def parent_of(spec: ImageSpec) -> ImageSpec | None:
    ref = parent_ref(spec.base_image, current_app.config["REGISTRY"])
    if ref is None:
        return None
    return db.session.scalar(select(ImageSpec).where(ImageSpec.name == ref.name))


def children_of(spec: ImageSpec) -> list[ImageSpec]:
    """The specs whose base is one of `spec`'s images, by name."""
    prefix = f"{current_app.config['REGISTRY']}/{spec.name}:"
    return list(db.session.scalars(
        select(ImageSpec).where(ImageSpec.base_image.startswith(prefix, autoescape=True)).order_by(ImageSpec.name)
    ))


def follows_latest(child: ImageSpec) -> bool:
    """A child on its parent's ``latest`` moves with the parent; one on a revision tag stays."""
    ref = parent_ref(child.base_image, current_app.config["REGISTRY"])
    return ref is not None and ref.tag == FOLLOWED_TAG


def cycle_through(name: str, base_image: str) -> list[str] | None:
    """The cycle a spec `name` with this base would close (``[a, b, a]``), or None."""
    registry = current_app.config["REGISTRY"]
    chain = [name]
    ref = parent_ref(base_image, registry)
    while ref is not None:
        chain.append(ref.name)
        if ref.name == name:
            return chain
        if ref.name in chain[:-1]:
            return None  # a cycle further up, not through this spec (refused when it was made)
        base = db.session.scalar(select(ImageSpec.base_image).where(ImageSpec.name == ref.name))
        ref = parent_ref(base, registry) if base else None
    return None


def spec_lineage(spec: ImageSpec) -> Lineage:
    parent = parent_of(spec)
    revision = None
    if parent is not None:
        built = active_job(spec)
        if built is not None and built.base_digest:
            revision = db.session.scalar(
                select(BuildJob.revision)
                .where(BuildJob.spec_id == parent.id, BuildJob.digest == built.base_digest)
                .order_by(BuildJob.revision.desc())
                .limit(1)
            )
    return Lineage(parent, revision, children_of(spec))
