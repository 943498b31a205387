"""Jobs with manifests for the revisions tests, written as the verify step writes them."""
from app.extensions import db
from app.models import BuildJob, JobPackage, JobStatus, utcnow
from app.specs.service import create_spec, update_spec

SPEC = {"name": "demo", "base_image": "debian:bookworm", "apt": ["jq"], "pip": ["six"], "conda": []}
BASE_DIGEST = "sha256:" + "d" * 64

# (manager, name, version, requested)
MANIFEST = [
    ("apt", "jq", "1.6-2.1", True),
    ("apt", "libc6", "2.36-9+deb12u4", False),
    ("apt", "python3-pip", "23.0.1+dfsg-1", False),
    ("pip", "pip", "23.0.1", False),
    ("pip", "six", "1.16.0", True),
]


def make_spec(**fields):
    outcome = create_spec({**SPEC, **fields})
    assert outcome.ok, outcome.result.errors
    return outcome.spec, outcome.job


def edit_spec(spec, **fields):
    from dataclasses import asdict

    from app.specs.service import spec_input_from_row

    outcome = update_spec(spec, {**asdict(spec_input_from_row(spec)), **fields})
    assert outcome.ok and outcome.job, outcome.result.errors
    return outcome.job


def finish(job: BuildJob, manifest=MANIFEST, *, status=JobStatus.SUCCEEDED, base_digest=BASE_DIGEST, size=123_456_789):
    """The job ended `status`; with a manifest unless `manifest` is None."""
    job.status = status
    job.finished_at = utcnow()
    job.base_digest = base_digest
    job.size_bytes = size
    job.image = f"127.0.0.1:5000/imagebuilder/{job.spec.name}:{job.tag}"
    if manifest is not None:
        job.os_name = "Debian GNU/Linux 12 (bookworm)"
        job.image_user = "root"
        job.packages_count = len(manifest)
        for manager, name, version, requested in manifest:
            db.session.add(JobPackage(job_id=job.id, manager=manager, name=name, version=version,
                                      arch="amd64" if manager == "apt" else None, requested=requested))
    db.session.commit()
    return job


def with_version(manifest, manager, name, version):
    return [(m, n, version if (m, n) == (manager, name) else v, r) for m, n, v, r in manifest]
