"""The revisions API as automation uses it: a job's packages and SBOM, compare, pin."""
import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from sqlalchemy import func, select

from app.extensions import db
from app.models import BuildJob, JobStatus, Trigger
from tests.revisions_support import BASE_DIGEST, MANIFEST, edit_spec, finish, make_spec, with_version

pytestmark = pytest.mark.usefixtures("queued_rq_jobs")


# --- packages -------------------------------------------------------------------------------


def test_packages_of_a_job_with_its_manifest(api):
    _spec, job = make_spec()
    finish(job)
    response = api.get(f"/api/v1/jobs/{job.id}/packages")
    assert response.status_code == 200
    body = response.get_json()
    assert body["job"] == job.id and body["os"] == "Debian GNU/Linux 12 (bookworm)" and body["user"] == "root"
    assert body["packages"][:2] == [
        {"manager": "apt", "name": "jq", "version": "1.6-2.1", "requested": True},
        {"manager": "apt", "name": "libc6", "version": "2.36-9+deb12u4", "requested": False},
    ]
    assert [p["manager"] for p in body["packages"]] == ["apt", "apt", "apt", "pip", "pip"]
    assert api.get(f"/api/v1/jobs/{job.id}").get_json()["packages_count"] == len(MANIFEST)


@pytest.mark.parametrize(
    "status, reason",
    [
        (JobStatus.QUEUED, "no package manifest yet: it is queued"),
        (JobStatus.FAILED, "it ended failed before its image was verified"),
        (JobStatus.SUCCEEDED, "built before manifests were collected"),
    ],
)
def test_packages_and_sbom_are_404_with_a_reason_until_the_job_has_a_manifest(api, status, reason):
    _spec, job = make_spec()
    if status != JobStatus.QUEUED:
        finish(job, None, status=status)
    assert api.get(f"/api/v1/jobs/{job.id}").get_json()["packages_count"] is None
    for url in (f"/api/v1/jobs/{job.id}/packages", f"/api/v1/jobs/{job.id}/sbom"):
        response = api.get(url)
        assert response.status_code == 404 and reason in response.get_json()["error"]


def test_an_empty_manifest_is_a_manifest(api):
    _spec, job = make_spec()
    finish(job, [])
    assert api.get(f"/api/v1/jobs/{job.id}/packages").get_json()["packages"] == []


@pytest.mark.parametrize("job_id", ["999", "2147483647", "2147483648", "99999999999999999999", "-1", "x"])
def test_unknown_and_out_of_range_job_ids_are_json_404s(api, job_id):
    for url in (f"/api/v1/jobs/{job_id}/packages", f"/api/v1/jobs/{job_id}/sbom"):
        response = api.get(url)
        assert response.status_code == 404 and response.get_json()["error"]


# --- SBOM -----------------------------------------------------------------------------------


def test_sbom_is_cyclonedx_1_6_with_package_urls_and_validates(api):
    _spec, job = make_spec()
    finish(job)
    response = api.get(f"/api/v1/jobs/{job.id}/sbom")
    assert response.status_code == 200 and response.mimetype == "application/vnd.cyclonedx+json"
    text = response.get_data(as_text=True)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    purls = {c["purl"] for c in document["components"]}
    assert {"pkg:deb/debian/jq@1.6-2.1?arch=amd64", "pkg:pypi/six@1.16.0"} <= purls
    assert len(document["components"]) == len(MANIFEST)
    image = document["metadata"]["component"]
    assert image["type"] == "container" and image["name"] == "demo" and image["version"] == job.tag
    facts = {p["name"]: p["value"] for p in image["properties"]}
    assert facts["imagebuilder:base-digest"] == BASE_DIGEST
    # The same document each time it is asked for.
    assert api.get(f"/api/v1/jobs/{job.id}/sbom").get_data(as_text=True) == text


def test_sbom_of_conda_packages_validates(api):
    _spec, job = make_spec()
    finish(job, [("conda", "numpy", "1.26.4", True), ("conda", "python", "3.11.8", False)])
    text = api.get(f"/api/v1/jobs/{job.id}/sbom").get_data(as_text=True)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert {c["purl"] for c in json.loads(text)["components"]} == {"pkg:conda/numpy@1.26.4", "pkg:conda/python@3.11.8"}


# --- compare --------------------------------------------------------------------------------


def test_compare_a_pip_version_change(api):
    spec, first = make_spec(pip=["six==1.16.0"])
    finish(first)
    second = finish(edit_spec(spec, pip=["six==1.17.0"]), with_version(MANIFEST, "pip", "six", "1.17.0"))
    response = api.get("/api/v1/specs/demo/compare?from=1&to=2")
    assert response.status_code == 200
    body = response.get_json()
    assert body["from"] == 1 and body["to"] == 2
    assert body["spec"] == [{"field": "pip", "from": ["six==1.16.0"], "to": ["six==1.17.0"]}]
    assert "-    'six==1.16.0'" in body["containerfile_diff"] or "-" in body["containerfile_diff"]
    assert "six==1.17.0" in body["containerfile_diff"]
    assert body["packages"] == {
        "added": [], "removed": [], "changed": [{"manager": "pip", "name": "six", "from": "1.16.0", "to": "1.17.0"}],
    }
    assert body["packages_unavailable"] == []
    assert body["base_digest"] == {"from": BASE_DIGEST, "to": BASE_DIGEST}
    assert body["size_bytes"] == {"from": 123_456_789, "to": 123_456_789}
    assert second.revision == 2


def test_compare_a_revision_with_itself_shows_no_change(api):
    _spec, job = make_spec()
    finish(job)
    body = api.get("/api/v1/specs/demo/compare?from=1&to=1").get_json()
    assert body["spec"] == [] and body["containerfile_diff"] == ""
    assert body["packages"] == {"added": [], "removed": [], "changed": []}


def test_compare_without_a_manifest_compares_the_rest_and_says_which_revision_lacks_one(api):
    spec, first = make_spec()
    finish(first)
    edit_spec(spec, apt=["curl", "jq"])  # r2 is still queued
    body = api.get("/api/v1/specs/demo/compare?from=1&to=2").get_json()
    assert body["packages"] is None
    assert [u["revision"] for u in body["packages_unavailable"]] == [2]
    assert "no package manifest yet" in body["packages_unavailable"][0]["reason"]
    assert body["spec"] == [{"field": "apt", "from": ["jq"], "to": ["curl", "jq"]}]
    assert body["base_digest"] == {"from": BASE_DIGEST, "to": None}


@pytest.mark.parametrize(
    "query, field, reason",
    [
        ("", "from", "required"),
        ("from=1", "to", "required"),
        ("from=abc&to=1", "from", "integer"),
        ("from=1&to=0", "to", "between"),
        ("from=1&to=2147483648", "to", "between"),
        ("from=-5&to=1", "from", "between"),
    ],
)
def test_compare_refuses_junk_revisions_with_422(api, query, field, reason):
    make_spec()
    response = api.get(f"/api/v1/specs/demo/compare?{query}")
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert any(e["field"] == field and reason in e["message"] for e in errors)


def test_compare_unknown_spec_or_revision_is_404(api):
    make_spec()
    assert api.get("/api/v1/specs/nope/compare?from=1&to=1").status_code == 404
    response = api.get("/api/v1/specs/demo/compare?from=1&to=7")
    assert response.status_code == 404 and response.get_json()["error"] == "demo has no revision 7."


# --- pin ------------------------------------------------------------------------------------


def jobs_of_demo():
    return db.session.scalar(select(func.count(BuildJob.id)))


def test_pin_rewrites_the_lines_to_the_installed_versions_and_starts_a_pinned_build(api, admin):
    _spec, job = make_spec(apt=["jq"], pip=["six>=1"])
    finish(job)
    response = api.post("/api/v1/specs/demo/pin", json={"revision": 1})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["apt"] == ["jq=1.6-2.1"] and body["pip"] == ["six==1.16.0"] and body["base_image"] == "debian:bookworm"
    assert body["unpinned"] == []
    new = db.session.get(BuildJob, body["job"]["id"])
    assert new.revision == 2 and new.status == JobStatus.QUEUED
    assert (new.trigger_kind, new.trigger_user) == (Trigger.PINNED, "admin")
    assert new.spec_snapshot["pip"] == ["six==1.16.0"]
    # Pinning the same revision again changes nothing.
    again = api.post("/api/v1/specs/demo/pin", json={"revision": 1})
    assert again.status_code == 200 and again.get_json()["job"] is None
    assert jobs_of_demo() == 2


def test_pin_with_base_names_the_base_by_digest(api):
    _spec, job = make_spec()
    finish(job)
    body = api.post("/api/v1/specs/demo/pin", json={"revision": 1, "base": True}).get_json()
    assert body["base_image"] == f"debian:bookworm@{BASE_DIGEST}"


def test_pin_of_an_older_revision_brings_back_its_lines(api):
    spec, first = make_spec(pip=["six"])
    finish(first)
    finish(edit_spec(spec, pip=["six", "requests"]), MANIFEST + [("pip", "requests", "2.31.0", True)])
    body = api.post("/api/v1/specs/demo/pin", json={"revision": 1}).get_json()
    assert body["pip"] == ["six==1.16.0"] and body["job"]["revision"] == 3


def test_pin_reports_lines_it_keeps_as_written(api):
    _spec, job = make_spec(apt=["awk", "jq"])
    finish(job)
    body = api.post("/api/v1/specs/demo/pin", json={"revision": 1}).get_json()
    assert body["apt"] == ["awk", "jq=1.6-2.1"]
    assert [(n["field"], n["line"]) for n in body["unpinned"]] == [("apt", "awk")]


@pytest.mark.parametrize(
    "finish_as, base, reason",
    [
        ("queued", False, "only a succeeded revision can be pinned"),
        ("failed", False, "only a succeeded revision can be pinned"),
        ("no-manifest", False, "built before manifests were collected"),
        ("no-digest", True, "No registry digest was recorded"),
        ("localhost", True, "is a local image (localhost/)"),
    ],
)
def test_pin_refuses_clearly_with_409_and_changes_nothing(api, finish_as, base, reason):
    _spec, job = make_spec(base_image="localhost/debian:bookworm" if finish_as == "localhost" else "debian:bookworm")
    if finish_as == "failed":
        finish(job, status=JobStatus.FAILED)
    elif finish_as == "no-manifest":
        finish(job, None)
    elif finish_as in ("no-digest", "localhost"):
        finish(job, base_digest=None if finish_as == "no-digest" else BASE_DIGEST)
    response = api.post("/api/v1/specs/demo/pin", json={"revision": 1, "base": base})
    assert response.status_code == 409 and reason in response.get_json()["error"]
    assert jobs_of_demo() == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "revision"),
        ({"revision": "1"}, "revision"),
        ({"revision": True}, "revision"),
        ({"revision": 0}, "revision"),
        ({"revision": 2**31}, "revision"),
        ({"revision": 1, "base": "yes"}, "base"),
        ({"revision": 1, "extra": 1}, "extra"),
    ],
)
def test_pin_refuses_a_bad_body_with_422(api, body, field):
    _spec, job = make_spec()
    finish(job)
    response = api.post("/api/v1/specs/demo/pin", json=body)
    assert response.status_code == 422
    assert field in {e["field"] for e in response.get_json()["errors"]}


def test_pin_unknown_spec_or_revision_is_404_and_a_non_object_body_400(api):
    _spec, job = make_spec()
    finish(job)
    assert api.post("/api/v1/specs/nope/pin", json={"revision": 1}).status_code == 404
    assert api.post("/api/v1/specs/demo/pin", json={"revision": 9}).status_code == 404
    assert api.post("/api/v1/specs/demo/pin", json=[1]).status_code == 400


def test_pin_whose_pinned_spec_is_invalid_is_422_with_the_line(api):
    _spec, job = make_spec()
    # A version dpkg reported that is no Debian version the spec accepts.
    finish(job, [("apt", "jq", "not a version", True), ("pip", "six", "1.16.0", True)])
    response = api.post("/api/v1/specs/demo/pin", json={"revision": 1})
    assert response.status_code == 422
    assert ("apt", 1) in {(e["field"], e["line"]) for e in response.get_json()["errors"]}
    assert jobs_of_demo() == 1


# --- the answers match the OpenAPI document ---------------------------------------------------


def openapi_validator(schema_name):
    from pathlib import Path

    import yaml
    from jsonschema import Draft202012Validator

    document = yaml.safe_load(Path("app/api/openapi.yaml").read_text())
    return Draft202012Validator({**document, "$ref": f"#/components/schemas/{schema_name}"})


def test_answers_match_their_openapi_schemas(api):
    spec, first = make_spec()
    finish(first)
    edit_spec(spec, apt=["curl", "jq"])
    checks = [
        ("JobPackages", api.get(f"/api/v1/jobs/{first.id}/packages")),
        ("Sbom", api.get(f"/api/v1/jobs/{first.id}/sbom")),
        ("Comparison", api.get("/api/v1/specs/demo/compare?from=1&to=2")),
        ("Comparison", api.get("/api/v1/specs/demo/compare?from=1&to=1")),
        ("JobDetail", api.get(f"/api/v1/jobs/{first.id}")),
        ("PinResult", api.post("/api/v1/specs/demo/pin", json={"revision": 1, "base": True})),
        ("PinResult", api.post("/api/v1/specs/demo/pin", json={"revision": 1, "base": True})),
    ]
    for name, response in checks:
        assert response.status_code in (200, 202), (name, response.get_json())
        errors = list(openapi_validator(name).iter_errors(json.loads(response.get_data(as_text=True))))
        assert errors == [], (name, errors[:3])


def test_pin_brings_back_the_test_command_of_that_revision_too(api):
    spec, first = make_spec(test_command="jq --version")
    finish(first)
    finish(edit_spec(spec, test_command="true"))
    body = api.post("/api/v1/specs/demo/pin", json={"revision": 1}).get_json()
    new = db.session.get(BuildJob, body["job"]["id"])
    assert new.spec_snapshot["test_command"] == "jq --version" and new.spec_snapshot["apt"] == ["jq=1.6-2.1"]
