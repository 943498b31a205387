"""The revision pages, from the admin's side: a job's Packages section and SBOM download,
comparing two revisions, and "Pin these versions"."""
import json
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import BuildJob, JobStatus, Trigger
from tests.revisions_support import BASE_DIGEST, MANIFEST, edit_spec, finish, make_spec, with_version

pytestmark = pytest.mark.usefixtures("queued_rq_jobs")


def html(response):
    return response.get_data(as_text=True)


def section(body):
    match = re.search(r'<section id="packages".*?</section>', body, re.S)
    assert match, "no Packages section"
    return match.group(0)


# --- the job page's Packages section ----------------------------------------------------------


def test_job_page_lists_the_packages_with_counts_os_user_and_the_requested_marker(client, auth):
    _spec, job = make_spec()
    finish(job)
    packages = section(html(client.get(f"/jobs/{job.id}")))
    assert "Debian GNU/Linux 12 (bookworm)" in packages and "<code>root</code>" in packages
    assert '<dd data-count="apt">3</dd>' in packages and '<dd data-count="pip">2</dd>' in packages
    assert '<dd data-count="conda">0</dd>' in packages
    rows = re.findall(r'<tr data-manager="(\w+)" data-requested="(\w+)">', packages)
    assert len(rows) == len(MANIFEST) and rows[0] == ("apt", "true") and rows[1] == ("apt", "false")
    assert packages.count(">requested</span>") == 2
    assert f'href="/jobs/{job.id}/sbom.json"' in packages
    assert "Pin these versions" in packages and "hx-trigger" not in packages
    assert "data-package-filter" in packages and "style=" not in packages and "<script" not in packages


def test_a_running_job_without_a_manifest_asks_again_until_it_has_one(client, auth):
    _spec, job = make_spec()
    job.status = JobStatus.RUNNING
    db.session.commit()
    packages = section(html(client.get(f"/jobs/{job.id}")))
    assert f'hx-get="/jobs/{job.id}/packages"' in packages and 'hx-trigger="every 2s"' in packages
    assert "appears once the build has verified its image" in packages
    finish(job)
    fragment = html(client.get(f"/jobs/{job.id}/packages"))
    assert fragment.startswith('<section id="packages"') and "hx-trigger" not in fragment
    assert "<code>jq</code>" in fragment


def test_a_failed_job_without_a_manifest_says_so_and_stops_asking(client, auth):
    _spec, job = make_spec()
    finish(job, None, status=JobStatus.FAILED)
    packages = section(html(client.get(f"/jobs/{job.id}")))
    assert "has no package list" in packages and "hx-trigger" not in packages
    assert "sbom.json" not in packages and "Pin these versions" not in packages


def test_html_in_package_names_stays_escaped(client, auth):
    _spec, job = make_spec()
    finish(job, [("pip", "<b>x</b>", "1<i>", False)])
    body = html(client.get(f"/jobs/{job.id}"))
    assert "<b>x</b>" not in body and "&lt;b&gt;x&lt;/b&gt;" in body


def test_compare_with_the_previous_revision_from_the_job_page(client, auth):
    spec, first = make_spec()
    finish(first)
    second = edit_spec(spec, pip=["six", "requests"])
    assert "Compare with" not in section(html(client.get(f"/jobs/{first.id}")))
    assert 'href="/specs/demo/compare?from=1&amp;to=2"' in section(html(client.get(f"/jobs/{second.id}")))


def test_the_base_checkbox_is_off_for_a_local_base(client, auth):
    _spec, job = make_spec(base_image="localhost/debian:bookworm")
    finish(job)
    assert 'name="base" value="1" disabled' in section(html(client.get(f"/jobs/{job.id}")))


# --- SBOM download ----------------------------------------------------------------------------


def test_sbom_download_is_an_attachment(client, auth):
    _spec, job = make_spec()
    finish(job)
    response = client.get(f"/jobs/{job.id}/sbom.json")
    assert response.status_code == 200 and response.mimetype == "application/vnd.cyclonedx+json"
    assert response.headers["Content-Disposition"] == 'attachment; filename="demo-r1.cdx.json"'
    assert json.loads(html(response))["bomFormat"] == "CycloneDX"


@pytest.mark.parametrize("job_id", ["999", "2147483648"])
def test_sbom_of_no_job_or_no_manifest_is_404(client, auth, job_id):
    assert client.get(f"/jobs/{job_id}/sbom.json").status_code == 404
    _spec, job = make_spec()
    assert client.get(f"/jobs/{job.id}/sbom.json").status_code == 404


def test_revision_pages_need_login(client, admin):
    _spec, job = make_spec()
    for url in (f"/jobs/{job.id}/packages", f"/jobs/{job.id}/sbom.json", "/specs/demo/compare?from=1&to=1"):
        assert client.get(url).status_code == 302
    assert client.post("/specs/demo/pin", data={"revision": "1"}).status_code == 302


# --- compare ----------------------------------------------------------------------------------


def test_compare_page_shows_the_spec_change_the_package_change_and_the_containerfile_diff(client, auth):
    spec, first = make_spec(pip=["six==1.16.0"])
    finish(first)
    finish(edit_spec(spec, pip=["six==1.17.0"]), with_version(MANIFEST, "pip", "six", "1.17.0"))
    response = client.get("/specs/demo/compare?from=1&to=2")
    assert response.status_code == 200
    body = html(response)
    spec_changes = re.search(r'<table[^>]*id="spec-changes".*?</table>', body, re.S).group(0)
    assert 'data-field="pip"' in spec_changes
    assert '<li class="removed"><code>six==1.16.0</code></li>' in spec_changes
    assert '<li class="added"><code>six==1.17.0</code></li>' in spec_changes
    changes = re.search(r'<table[^>]*id="package-changes".*?</table>', body, re.S).group(0)
    assert changes.count("<tr class=") == 1 and "<code>1.16.0</code>" in changes and "<code>1.17.0</code>" in changes
    assert '<span class="diff-add">' in body and BASE_DIGEST in body


def test_compare_page_says_which_revision_has_no_manifest(client, auth):
    spec, first = make_spec()
    finish(first)
    edit_spec(spec, apt=["curl", "jq"])
    body = html(client.get("/specs/demo/compare?from=1&to=2"))
    assert "has no package manifest yet" in body and 'id="spec-changes"' in body


def test_compare_page_without_a_choice_compares_the_two_newest(client, auth):
    spec, first = make_spec()
    edit_spec(spec, apt=["curl"])
    response = client.get("/specs/demo/compare")
    assert response.status_code == 302 and response.location.endswith("/specs/demo/compare?from=1&to=2")


def test_compare_page_of_a_spec_with_one_revision_says_it_needs_two(client, auth):
    make_spec()
    body = html(client.get("/specs/demo/compare"))
    assert "compare needs two" in body


def test_two_ticked_jobs_of_the_jobs_tab_open_their_comparison(client, auth):
    spec, _first = make_spec()
    edit_spec(spec, apt=["curl"])
    edit_spec(spec, apt=["git"])
    tab = html(client.get("/specs/demo/edit?tab=jobs"))
    assert 'id="compare-form"' in tab and 'action="/specs/demo/compare"' in tab
    assert tab.count('form="compare-form" name="rev"') == 3
    response = client.get("/specs/demo/compare?rev=3&rev=1")
    assert response.status_code == 302 and response.location.endswith("/specs/demo/compare?from=1&to=3")
    one = client.get("/specs/demo/compare?rev=3")
    assert one.status_code == 422 and "Tick exactly two jobs" in html(one)


@pytest.mark.parametrize(
    "query, status, message",
    [
        ("from=abc&to=1", 422, "Must be a revision number"),
        ("from=1&to=99999999999", 422, "Must be between 1 and 2147483647"),
        ("from=1", 422, "A revision number is required"),
        ("rev=1&rev=x", 422, "Must be a revision number"),
        ("from=1&to=9", 404, "demo has no revision 9."),
    ],
)
def test_compare_page_refuses_bad_revisions_with_the_reason(client, auth, query, status, message):
    make_spec()
    response = client.get(f"/specs/demo/compare?{query}")
    assert response.status_code == status and message in html(response)
    assert client.get(f"/specs/nope/compare?{query}").status_code == 404


# --- pin ----------------------------------------------------------------------------------------


def test_pin_these_versions_saves_the_pinned_spec_and_opens_its_new_job(client, auth):
    spec, job = make_spec(pip=["six"])
    finish(job)
    response = client.post("/specs/demo/pin", data={"revision": "1", "base": "1"})
    new = db.session.scalar(select(BuildJob).where(BuildJob.revision == 2))
    assert response.status_code == 302 and response.location.endswith(f"/jobs/{new.id}")
    assert new.trigger_kind == Trigger.PINNED and new.trigger_user == "admin"
    assert new.spec_snapshot["apt"] == ["jq=1.6-2.1"] and new.spec_snapshot["pip"] == ["six==1.16.0"]
    assert new.spec_snapshot["base_image"] == f"debian:bookworm@{BASE_DIGEST}"
    assert "Pinned demo to the versions of r1" in html(client.get(response.location))


def test_pin_refused_comes_back_to_the_job_page_with_the_reason(client, auth):
    _spec, job = make_spec(base_image="localhost/debian:bookworm")
    finish(job)
    response = client.post("/specs/demo/pin", data={"revision": "1", "base": "1"})
    assert response.status_code == 302 and response.location.endswith(f"/jobs/{job.id}")
    assert "is a local image (localhost/)" in html(client.get(response.location))
    assert db.session.scalar(select(func.count(BuildJob.id))) == 1


def test_pin_of_a_bad_revision_goes_to_the_jobs_tab_with_the_reason(client, auth):
    make_spec()
    response = client.post("/specs/demo/pin", data={"revision": "abc"})
    assert response.status_code == 302 and response.location.endswith("/specs/demo/edit?tab=jobs")
    assert "Not pinned: Must be a revision number" in html(client.get(response.location))


def test_pin_needs_the_csrf_token(app, client, auth):
    _spec, job = make_spec()
    finish(job)
    app.config["WTF_CSRF_ENABLED"] = True
    assert client.post("/specs/demo/pin", data={"revision": "1"}).status_code == 400
    assert db.session.scalar(select(func.count(BuildJob.id))) == 1
