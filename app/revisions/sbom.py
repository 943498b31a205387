"""The SBOM of a job's image: its manifest as a CycloneDX 1.6 JSON document.

Made with the CycloneDX Python library. The image is the document's subject (a
``container`` component named by its pushed reference and digest); each installed
package is a component with its package URL (``pkg:deb/debian/jq@1.6-2.1?arch=amd64``,
``pkg:pypi/six@1.16.0``, ``pkg:conda/numpy@1.26.4?build=...&channel=conda-forge``).
The document is the same each time it is asked for: its serial number comes from the
job, its timestamp is the job's end.
"""
from __future__ import annotations

import uuid
from datetime import timezone

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from ..models import BuildJob, JobPackage

MEDIA_TYPE = "application/vnd.cyclonedx+json"
SPEC_VERSION = "1.6"
_SERIAL_NAMESPACE = uuid.UUID("5b0c2c4e-93e4-4c1c-9a77-6d1c5e1b7a10")


def deb_vendor(os_name: str | None) -> str:
    """The purl namespace of a dpkg package: the distribution's first word, lowercased
    ('Debian GNU/Linux 12 (bookworm)' -> 'debian', 'Ubuntu 24.04 LTS' -> 'ubuntu')."""
    words = (os_name or "").split()
    return words[0].lower() if words else "debian"


def package_url(package: JobPackage, os_name: str | None) -> PackageURL:
    if package.manager == "apt":
        qualifiers = {"arch": package.arch} if package.arch else {}
        return PackageURL("deb", deb_vendor(os_name), package.name, package.version, qualifiers)
    if package.manager == "pip":
        return PackageURL("pypi", None, canonicalize_name(package.name), package.version)
    qualifiers = {key: value for key, value in (("build", package.build), ("channel", package.channel)) if value}
    return PackageURL("conda", None, package.name, package.version, qualifiers)


def sbom_filename(job: BuildJob) -> str:
    return f"{job.spec.name}-r{job.revision}.cdx.json"


def sbom_document(job: BuildJob, packages: list[JobPackage]) -> str:
    """The CycloneDX JSON text of `job`'s manifest (`packages`, as manifest.job_packages reads it)."""
    bom = Bom(serial_number=uuid.uuid5(_SERIAL_NAMESPACE, f"{job.spec.name}/{job.revision}/{job.id}"))
    if job.finished_at:
        bom.metadata.timestamp = job.finished_at.replace(tzinfo=timezone.utc)
    image = Component(
        name=job.spec.name,
        version=job.tag,
        type=ComponentType.CONTAINER,
        bom_ref="image",
        properties=[Property(name=f"imagebuilder:{key}", value=value) for key, value in _image_facts(job) if value],
    )
    bom.metadata.component = image
    components, refs = [], set()
    for package in packages:
        purl = package_url(package, job.os_name)
        ref = purl.to_string()
        if ref in refs:  # the same package twice (two pip site directories): refs stay unique
            ref = f"{ref}#{len(components)}"
        refs.add(ref)
        component = Component(
            name=package.name,
            version=package.version,
            type=ComponentType.LIBRARY,
            purl=purl,
            bom_ref=ref,
            properties=[Property(name="imagebuilder:requested", value="true")] if package.requested else [],
        )
        bom.components.add(component)
        components.append(component)
    bom.register_dependency(image, components)
    return JsonV1Dot6(bom).output_as_string(indent=2)


def _image_facts(job: BuildJob):
    return (
        ("image", job.image),
        ("digest", job.digest),
        ("base-image", (job.spec_snapshot or {}).get("base_image")),
        ("base-digest", job.base_digest),
        ("os", job.os_name),
        ("user", job.image_user),
    )
