"""Revisions with real builds: a pip version change is exactly that change in compare; pin
then rebuild installs the same versions; the SBOM of a real build validates."""
import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from app.auth.service import create_or_update_user, issue_token
from app.extensions import db
from app.models import BuildJob, Trigger
from integration.support import BASE, assert_succeeded, change_spec, save_spec

pytestmark = pytest.mark.integration


@pytest.fixture
def api(stack):
    with stack.app.app_context():
        token = issue_token(create_or_update_user("revisions-it", "a-long-password-for-it"))
    client = stack.app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    class Api:
        def get(self, url):
            return client.get(f"/api/v1{url}", headers=headers)

        def post(self, url, body):
            return client.post(f"/api/v1{url}", headers=headers, json=body)

    return Api()


def test_compare_a_pip_change_pin_the_first_revision_and_rebuild_it_the_same(stack, api):
    first = stack.wait_for(save_spec(stack, name="revs", base_image=BASE, apt="jq", pip="six==1.16.0"))
    assert_succeeded(stack, first)
    second = stack.wait_for(change_spec(stack, "revs", pip=["six==1.17.0"]))
    assert_succeeded(stack, second)

    # The pip line changed, and so did six: nothing else.
    comparison = api.get("/specs/revs/compare?from=1&to=2").get_json()
    assert comparison["spec"] == [{"field": "pip", "from": ["six==1.16.0"], "to": ["six==1.17.0"]}]
    assert comparison["packages"] == {
        "added": [], "removed": [],
        "changed": [{"manager": "pip", "name": "six", "from": "1.16.0", "to": "1.17.0"}],
    }
    assert comparison["base_digest"]["from"] == comparison["base_digest"]["to"] == first.base_digest

    # The SBOM of a real build validates against the CycloneDX schema.
    packages = {(p["manager"], p["name"]): p for p in api.get(f"/jobs/{first.id}/packages").get_json()["packages"]}
    jq_version = packages["apt", "jq"]["version"]
    sbom = api.get(f"/jobs/{first.id}/sbom")
    assert sbom.status_code == 200
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom.get_data(as_text=True)) is None
    purls = {c["purl"] for c in json.loads(sbom.get_data(as_text=True))["components"]}
    jq_purl = PackageURL("deb", "debian", "jq", jq_version, {"arch": "amd64"}).to_string()  # '+' is %2B
    assert jq_purl in purls and "pkg:pypi/six@1.16.0" in purls
    assert len(purls) == first.packages_count

    # Pin r1: its lines come back at the versions r1 installed; the build installs them again.
    pinned = api.post("/specs/revs/pin", {"revision": 1})
    assert pinned.status_code == 202, pinned.get_json()
    assert pinned.get_json()["apt"] == [f"jq={jq_version}"] and pinned.get_json()["pip"] == ["six==1.16.0"]
    third = stack.wait_for(pinned.get_json()["job"]["id"])
    assert_succeeded(stack, third)
    with stack.app.app_context():
        assert db.session.get(BuildJob, third.id).trigger_kind == Trigger.PINNED

    again = api.get("/specs/revs/compare?from=1&to=3").get_json()
    assert again["spec"] == [{"field": "apt", "from": ["jq"], "to": [f"jq={jq_version}"]}]
    pinned_names = {("apt", "jq"), ("pip", "six")}
    touched = {(p["manager"], p["name"]) for kind in ("added", "removed", "changed") for p in again["packages"][kind]}
    assert not touched & pinned_names, again["packages"]
    assert again["packages"] == {"added": [], "removed": [], "changed": []}
