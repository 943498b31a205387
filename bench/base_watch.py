"""One base-watch round over 1,000 specs against the local registry: seconds and registry
requests (goal: under 60 s, one HEAD per distinct base reference, not per spec).

    .venv/bin/python bench/base_watch.py [--specs 1000] [--references 50]

One small image is pushed to the local registry, then tagged under `--references` tags
(the registry API: the same manifest PUT under each tag). The specs spread over those
tags; each has an active revision built from the tag's digest, except every tenth, whose
recorded digest is an older one and whose policy is `notify` (so the round also writes
marks, and starts no build: no worker runs here).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from _stack import BASE, start_services

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from app import create_app  # noqa: E402
from app.builds.podman import Podman, RegistryAuth  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import BasePolicy, BuildJob, ImageSpec, JobStatus  # noqa: E402
from app.watch.base_check import check_round  # noqa: E402
from integration.support import REGISTRY_HOST, drain  # noqa: E402

OLD_DIGEST = "sha256:" + "0" * 64


def push_tags(services: dict, repository: str, count: int) -> str:
    """`repository:t0` .. `t<count-1>`, all one manifest; its digest."""
    auth = (services.get("REGISTRY_USERNAME", "imagebuilder"), services["REGISTRY_PASSWORD"])
    podman = Podman(services["PODMAN_URL"])
    try:
        podman.tag_image(BASE, f"{REGISTRY_HOST}/{repository}", "t0")
        drain(podman.push(f"{REGISTRY_HOST}/{repository}:t0", RegistryAuth(REGISTRY_HOST, *auth), tls_verify=False))
        podman.remove_image(f"{REGISTRY_HOST}/{repository}:t0")  # only the name goes: the test base stays
    finally:
        podman.close()
    session = requests.Session()
    session.trust_env = False
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    first = session.get(f"http://{REGISTRY_HOST}/v2/{repository}/manifests/t0", auth=auth, headers={"Accept": accept})
    first.raise_for_status()
    media_type = first.headers["Content-Type"]
    for n in range(1, count):
        session.put(f"http://{REGISTRY_HOST}/v2/{repository}/manifests/t{n}", data=first.content, auth=auth,
                    headers={"Content-Type": media_type}).raise_for_status()
    return first.headers["Docker-Content-Digest"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--references", type=int, default=50)
    args = parser.parse_args()

    services = start_services()
    sid = uuid.uuid4().hex[:8]
    repository = f"bench-{sid}/base"
    print(f"pushing {args.references} tags of {REGISTRY_HOST}/{repository} ...", flush=True)
    digest = push_tags(services, repository, args.references)

    workdir = Path(tempfile.mkdtemp(prefix="imagebuilder-bench-watch-"))
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'bench.db'}", "SECRET_KEY": "bench",
        "CREDENTIALS_KEY": Fernet.generate_key().decode(), "RQ_QUEUE": f"bench-watch-{sid}",
        "REDIS_URL": services.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REGISTRY": f"{REGISTRY_HOST}/bench-{sid}", "REGISTRY_TLS_VERIFY": False,
        "REGISTRY_USERNAME": services.get("REGISTRY_USERNAME", "imagebuilder"),
        "REGISTRY_PASSWORD": services["REGISTRY_PASSWORD"],
    })
    with app.app_context():
        db.create_all()
        for n in range(args.specs):
            stale = n % 10 == 0
            spec = ImageSpec(name=f"spec{n:04d}", base_image=f"{REGISTRY_HOST}/{repository}:t{n % args.references}",
                             apt=[], pip=[], conda=[], active_revision=1,
                             base_policy=BasePolicy.NOTIFY if stale else BasePolicy.REBUILD)
            db.session.add(spec)
            db.session.flush()
            db.session.add(BuildJob(spec_id=spec.id, revision=1, input_hash="00000000", status=JobStatus.SUCCEEDED,
                                    spec_snapshot={}, base_digest=OLD_DIGEST if stale else digest))
        db.session.commit()

        print(f"checking {args.specs} specs on {args.references} references ...", flush=True)
        started = time.perf_counter()
        summary = check_round()
        seconds = time.perf_counter() - started
        marked = db.session.query(ImageSpec).filter(ImageSpec.base_update_digest == digest).count()

    print(f"specs checked:        {summary.specs}")
    print(f"distinct references:  {summary.references}")
    print(f"registry requests:    {summary.requests} (HEADs and one /v2/ probe per registry client)")
    print(f"moved (notify, marked): {len(summary.moved)} ({marked} marked), jobs started: {len(summary.jobs)}, "
          f"errors: {len(summary.errors)}")
    print(f"seconds:              {seconds:.1f}")


if __name__ == "__main__":
    main()
