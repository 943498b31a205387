"""API tokens and users: a token has a name, an expiry and a last-used time; it can be
listed and revoked from the page, the API and the CLI; revoked, expired and disabled
users' tokens and sessions stop at once."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.auth.service import issue_token, user_for_token
from app.extensions import db
from app.models import ApiToken, AuditEvent, User, utcnow
from tests.conftest import ADMIN_PASSWORD

TOKEN_KEYS = {"prefix", "name", "created_at", "expires_at", "last_used_at"}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def row_of(token):
    return db.session.scalar(select(ApiToken).where(ApiToken.prefix == token[:10]))


# The API

def test_create_list_and_revoke_a_token_over_the_api(client, api, api_token):
    created = api.post("/api/v1/tokens", json={"name": "ci-nightly", "expires_in_days": 30})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert set(body) == TOKEN_KEYS | {"token"}
    assert body["name"] == "ci-nightly" and body["token"].startswith(body["prefix"])
    assert body["expires_at"] is not None

    new = body["token"]
    assert client.get("/api/v1/specs", headers=bearer(new)).status_code == 200
    listed = api.get("/api/v1/tokens").get_json()["tokens"]
    assert [t["name"] for t in listed] == ["ci-nightly", "api"]
    assert all(set(t) == TOKEN_KEYS for t in listed)
    assert not any(new in str(t) or api_token in str(t) for t in listed)

    assert api.delete(f"/api/v1/tokens/{body['prefix']}").status_code == 204
    refused = client.get("/api/v1/specs", headers=bearer(new))
    assert refused.status_code == 401
    assert [t["name"] for t in api.get("/api/v1/tokens").get_json()["tokens"]] == ["api"]
    assert api.delete(f"/api/v1/tokens/{body['prefix']}").status_code == 404
    for strange in ("ib_", "ib_%00%00%00%00%00%00%00", "x" * 300):
        assert api.delete(f"/api/v1/tokens/{strange}").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 81}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "ok", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 3651}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "30"}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": True}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 1.5}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 10 ** 30}, "expires_in_days"),
        ({"name": "ok", "scope": "all"}, "scope"),
    ],
)
def test_bad_token_input_is_a_422_naming_the_field(api, body, field):
    response = api.post("/api/v1/tokens", json=body)
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == [field]


def test_a_token_of_another_user_cannot_be_revoked_over_the_api(api):
    from app.auth.service import create_or_update_user

    other = issue_token(create_or_update_user("other", "another-password"))
    assert api.delete(f"/api/v1/tokens/{other[:10]}").status_code == 404
    assert user_for_token(other) is not None


def test_an_expired_token_answers_401_and_the_last_use_is_recorded(client, admin):
    token = issue_token(admin, "short", 1)
    assert client.get("/api/v1/specs", headers=bearer(token)).status_code == 200
    row = row_of(token)
    assert row.last_used_at is not None
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    response = client.get("/api/v1/specs", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# Users

def test_a_disabled_users_session_and_tokens_stop_at_the_next_request(client, auth, admin, api_token, runner):
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/specs", headers=bearer(api_token)).status_code == 200
    result = runner.invoke(args=["disable-user", "admin"])
    assert result.exit_code == 0, result.output
    assert client.get("/").status_code == 302
    assert client.get("/api/v1/specs", headers=bearer(api_token)).status_code == 401
    refused = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert refused.status_code == 401
    assert "Wrong username or password." in refused.get_data(as_text=True)

    assert runner.invoke(args=["enable-user", "admin"]).exit_code == 0
    assert client.get("/api/v1/specs", headers=bearer(api_token)).status_code == 200


def test_set_password_reads_stdin_and_the_old_one_stops_working(client, admin, runner):
    result = runner.invoke(args=["set-password", "admin"], input="a-brand-new-password\n")
    assert result.exit_code == 0, result.output
    assert client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 401
    assert client.post("/login", data={"username": "admin", "password": "a-brand-new-password"}).status_code == 302
    assert runner.invoke(args=["set-password", "admin"], input="short\n").exit_code != 0
    assert runner.invoke(args=["set-password", "nobody"], input="long-enough-pw\n").exit_code != 0


def test_list_users_shows_state_and_live_tokens(admin, api_token, runner):
    from app.auth.service import create_or_update_user, set_disabled

    set_disabled(create_or_update_user("gone", "gone-password"), True)
    lines = runner.invoke(args=["list-users"]).output.splitlines()
    assert lines[0].startswith("admin\tactive\t") and lines[0].endswith("tokens 1")
    assert lines[1].startswith("gone\tdisabled ")


# The CLI

def test_cli_creates_lists_and_revokes_tokens(client, admin, runner):
    result = runner.invoke(args=["create-token", "admin", "--name", "deploy", "--expires-in-days", "7"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert client.get("/api/v1/specs", headers=bearer(token)).status_code == 200

    listing = runner.invoke(args=["list-tokens"]).output
    assert token[:10] in listing and "deploy" in listing and "expires " in listing
    assert token not in listing

    assert runner.invoke(args=["revoke-token", token[:10]]).exit_code == 0
    assert client.get("/api/v1/specs", headers=bearer(token)).status_code == 401
    assert token[:10] not in runner.invoke(args=["list-tokens"]).output
    assert runner.invoke(args=["revoke-token", token[:10]]).exit_code != 0
    assert runner.invoke(args=["create-token", "admin", "--expires-in-days", "0"]).exit_code != 0
    assert runner.invoke(args=["create-token", "nobody"]).exit_code != 0


# The page

def test_the_tokens_page_shows_a_new_token_once_and_revokes(client, auth, admin):
    created = client.post("/tokens", data={"name": "laptop", "expires_in_days": "30"})
    assert created.status_code == 200
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "laptop"))
    page = created.get_data(as_text=True)
    token = page.split('id="new-token-value">', 1)[1].split("<", 1)[0]
    assert token.startswith(row.prefix) and row.token_hash == ApiToken.hash_token(token)

    again = client.get("/tokens").get_data(as_text=True)
    assert "laptop" in again and row.prefix in again and token not in again

    revoked = client.post(f"/tokens/{row.prefix}/revoke")
    assert revoked.status_code == 302
    assert client.get("/api/v1/specs", headers=bearer(token)).status_code == 401
    assert client.post(f"/tokens/{row.prefix}/revoke").status_code == 404


@pytest.mark.parametrize("form", [{"name": ""}, {"name": "ok", "expires_in_days": "forever"},
                                  {"name": "ok", "expires_in_days": "99999999999999999999999"}])
def test_the_tokens_page_says_what_is_wrong(client, auth, form):
    response = client.post("/tokens", data=form)
    assert response.status_code == 422
    assert 'role="alert"' in response.get_data(as_text=True)
    assert db.session.scalar(select(ApiToken).where(ApiToken.name == "ok")) is None


def test_token_changes_are_audited_without_the_token(client, api, api_token):
    body = api.post("/api/v1/tokens", json={"name": "audited"}).get_json()
    api.delete(f"/api/v1/tokens/{body['prefix']}")
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(e.action, e.actor) for e in events if e.action.startswith("token.")][-2:] == [
        ("token.created", "admin"), ("token.revoked", "admin")]
    assert not any(body["token"] in str((e.target, e.changes)) for e in events)
    assert db.session.scalar(select(User).where(User.username == "admin")).is_active
