"""The audit trail: every state change is a row saying who, when, from where, what and
the change in brief; shown per spec (History), on the Audit page and in the API; pruned."""
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select

from app import audit
from app.audit.queries import parse_since
from app.extensions import db
from app.models import AuditEvent, BuildJob, utcnow
from tests.conftest import ADMIN_PASSWORD

DEMO = {"name": "demo", "base_image": "debian:bookworm", "apt": ["curl"], "pip": [], "conda": []}
PASSWORD = "registry-pa55-never-kept"
EVENT_KEYS = {"id", "at", "user", "address", "action", "spec", "target", "changes"}


def events(**where):
    query = select(AuditEvent).order_by(AuditEvent.id)
    for key, value in where.items():
        query = query.where(getattr(AuditEvent, key) == value)
    return db.session.scalars(query).all()


# Pure parts

@pytest.mark.parametrize(
    "old, new, expected",
    [
        ({}, {"a": 1}, {"a": (None, 1)}),
        ({"a": 1}, {"a": 1}, {}),
        ({"a": ["x"]}, {"a": ["x", "y"]}, {"a": (["x"], ["x", "y"])}),
        ({"a": 1, "b": 2}, {"b": 3, "a": 1}, {"b": (2, 3)}),
    ],
)
def test_diff_keeps_the_changed_fields(old, new, expected):
    assert audit.diff(old, new) == expected


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"apt": (["curl"], ["curl", "git"])}, {"apt": ["curl", "curl\ngit"]}),
        ({"password": ("old-secret", "new-secret")}, {"password": ["(changed)", "(changed)"]}),
        ({"api_token": (None, "ib_xyz")}, {"api_token": ["(changed)", "(changed)"]}),
        ({"n": (1, None)}, {"n": [1, None]}),
        ({"text": ("", "x" * 600)}, {"text": ["", "x" * 499 + "…"]}),
    ],
)
def test_brief_changes_masks_secrets_and_cuts_long_values(changes, expected):
    assert audit.brief_changes(changes) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2026-12-01", "2026-12-01 00:00:00"),
        ("2026-12-01T10:00:00Z", "2026-12-01 10:00:00"),
        ("2026-12-01T12:00:00+02:00", "2026-12-01 10:00:00"),
        ("yesterday", None),
        ("0001-01-01T00:00:00+01:00", None),
        ("1969-12-31", None),
        ("99999-01-01", None),
    ],
)
def test_parse_since(raw, expected):
    if expected is None:
        with pytest.raises(ValueError):
            parse_since(raw)
    else:
        assert str(parse_since(raw)) == expected


def test_an_unknown_action_is_a_programming_error(app):
    with pytest.raises(ValueError):
        audit.record("spec.renamed")


def test_the_openapi_action_list_is_the_modules(client):
    document = yaml.safe_load(client.get("/api/v1/openapi.yaml").get_data(as_text=True))
    assert tuple(document["components"]["schemas"]["AuditAction"]["enum"]) == audit.ACTIONS


# Every service records who, what and the change

def test_spec_lifecycle_is_recorded_with_who_and_what(client, auth, admin):
    client.post("/specs/new", data={**DEMO, "apt": "curl"})
    client.post("/specs/demo/edit", data={**DEMO, "apt": "curl\ngit"})
    client.post("/specs/demo/edit", data={**DEMO, "apt": "curl\ngit"})  # unchanged: no row
    client.post("/specs/demo/rebuild")
    job = db.session.scalar(select(BuildJob).order_by(BuildJob.id.desc()))
    client.post(f"/jobs/{job.id}/cancel")
    client.post("/specs/demo/delete")

    rows = events(spec="demo")
    assert [r.action for r in rows] == [
        "spec.created", "spec.edited", "build.rebuilt", "build.cancelled", "spec.deleted"]
    assert {r.actor for r in rows} == {"admin"}
    assert all(r.address == "127.0.0.1" for r in rows)
    assert rows[0].changes == {"base_image": [None, "debian:bookworm"], "apt": [None, "curl"]}
    assert rows[1].changes == {"apt": ["curl", "curl\ngit"]}
    assert rows[2].target == "r3 (rebuild)"
    assert rows[3].changes == {"status": ["queued", "cancelled"]}


def test_credential_changes_are_recorded_without_the_password(client, api):
    api.post("/api/v1/credentials", json={"name": "hub", "registry": "r.example", "username": "u", "password": PASSWORD})
    api.patch("/api/v1/credentials/hub", json={"username": "bot", "password": PASSWORD + "2"})
    api.delete("/api/v1/credentials/hub")
    rows = events(target="hub")
    assert [r.action for r in rows] == ["credential.created", "credential.changed", "credential.deleted"]
    assert rows[1].changes == {"username": ["u", "bot"], "password": ["(changed)", "(changed)"]}
    assert all(r.actor == "admin" for r in rows)
    assert PASSWORD not in str([(r.target, r.changes) for r in events()])


def test_sign_ins_are_recorded_failed_and_succeeded(client, admin):
    client.post("/login", data={"username": "admin", "password": "wrong-password"})
    client.post("/login", data={"username": "nobody", "password": "whatever"})
    client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    rows = [(r.action, r.actor) for r in events() if r.action.startswith("signin.")]
    assert rows == [("signin.failed", "admin"), ("signin.failed", "nobody"), ("signin.succeeded", "admin")]
    assert "wrong-password" not in str([(r.target, r.changes) for r in events()])


def test_a_new_active_revision_is_recorded_as_the_system_outside_a_request(app, api):
    from app.models import ImageSpec, JobStatus
    from app.revisions.active import set_active

    api.post("/api/v1/specs", json=DEMO)
    spec = db.session.scalar(select(ImageSpec))
    job = spec.jobs.first()
    job.status = JobStatus.SUCCEEDED
    db.session.commit()
    set_active(spec, job)
    (row,) = events(action="build.activated")
    assert (row.actor, row.spec, row.changes) == ("system", "demo", {"active_revision": [None, 1]})


# Where it is shown

def test_the_spec_history_tab_and_the_audit_page_answer_who_changed_it(client, auth):
    client.post("/specs/new", data=DEMO)
    client.post("/specs/demo/edit", data={**DEMO, "apt": "curl\nwget"})
    history = client.get("/specs/demo/edit?tab=history")
    assert history.status_code == 200
    text = history.get_data(as_text=True)
    assert "spec.edited" in text and "spec.created" in text and "admin" in text and "wget" in text

    page = client.get("/audit?spec=demo&action=spec.edited").get_data(as_text=True)
    assert "spec.edited" in page and "spec.created" not in page.split('id="audit-table"')[1]
    assert client.get("/audit?user=nobody").get_data(as_text=True).count('id="audit-') == 1  # only the table's empty state
    bad = client.get("/audit?since=last-tuesday")
    assert bad.status_code == 422 and "ISO-8601" in bad.get_data(as_text=True)
    assert client.get("/audit?page=99999999999999999999999").status_code == 200
    assert client.get("/audit?spec=a%00b").status_code == 422
    assert client.get("/specs/demo/edit?tab=history&page=-5").status_code == 200


def test_the_audit_page_pages(client, auth):
    for number in range(55):
        audit.record(audit.SPEC_EDITED, spec=f"s{number}", user="admin")
    db.session.commit()
    first = client.get("/audit").get_data(as_text=True)
    assert "s54" in first and "s0<" not in first and "Page 1 of 2" in first
    second = client.get("/audit?page=2").get_data(as_text=True)
    assert "s0<" in second


def test_the_api_filters_and_pages_the_trail(api):
    api.post("/api/v1/specs", json=DEMO)
    api.post("/api/v1/specs", json={**DEMO, "name": "other"})
    api.post("/api/v1/specs/demo/rebuild")
    body = api.get("/api/v1/audit?spec=demo").get_json()
    assert [e["action"] for e in body["events"]] == ["build.rebuilt", "spec.created"]
    assert set(body["events"][0]) == EVENT_KEYS
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (1, 50, 2, 1)

    paged = api.get("/api/v1/audit?per_page=1&page=2&user=admin").get_json()
    assert [e["spec"] for e in paged["events"]] == ["other"] and paged["total"] == 3
    assert api.get("/api/v1/audit?action=spec.created").get_json()["total"] == 2
    future = (utcnow() + timedelta(days=1)).date().isoformat()
    assert api.get(f"/api/v1/audit?since={future}").get_json()["total"] == 0


@pytest.mark.parametrize(
    "query, field",
    [
        ("since=soon", "since"),
        ("action=spec.renamed", "action"),
        ("page=0", "page"),
        ("page=1000001", "page"),
        ("page=18446744073709551616", "page"),
        ("per_page=abc", "per_page"),
        ("spec=" + "x" * 256, "spec"),
        ("spec=a%00b", "spec"),
        ("user=%1b", "user"),
    ],
)
def test_bad_audit_queries_are_422_naming_the_parameter(api, query, field):
    response = api.get(f"/api/v1/audit?{query}")
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == [field]


# Retention

def test_audit_rows_are_pruned_after_the_retention_days(app):
    from app.ops.retention import prune_jobs

    old = audit.record(audit.SPEC_EDITED, spec="old")
    old.created_at = utcnow() - timedelta(days=366)
    audit.record(audit.SPEC_EDITED, spec="new")
    db.session.commit()
    assert prune_jobs()["audit_events_deleted"] == 1
    assert [r.spec for r in events()] == ["new"]
    assert prune_jobs(audit_days=0, now=utcnow() + timedelta(seconds=1))["audit_events_deleted"] == 1
