"""Request size limits, security headers, the idle session timeout, and the sign-in and
API-token throttle (real Redis, a key prefix of this test's app)."""
import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, ImageSpec
from app.security import DASHBOARD_POLICY, PAGE_POLICY
from tests.conftest import ADMIN_PASSWORD, AuthActions

SPEC = {"name": "demo", "base_image": "debian:bookworm"}


# Limits

def test_a_body_over_max_content_length_is_a_413_naming_the_limit(api, app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = api.post("/api/v1/specs", json={**SPEC, "apt": ["curl"] * 400})
    assert response.status_code == 413
    assert response.get_json() == {
        "error": "The request body is too large: at most 1000 B (1000 bytes, MAX_CONTENT_LENGTH) is accepted."
    }


def test_a_form_over_max_content_length_is_a_413_page(client, auth, app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.post("/specs/new", data={**SPEC, "apt": "curl\n" * 400})
    assert response.status_code == 413
    assert "at most 1000 B (1000 bytes, MAX_CONTENT_LENGTH)" in response.get_data(as_text=True)


@pytest.mark.parametrize("field", ["apt", "pip", "conda"])
def test_more_package_lines_than_max_package_lines_is_one_error_naming_the_limit(api, app, field):
    app.config["MAX_PACKAGE_LINES"] = 3
    response = api.post("/api/v1/specs", json={**SPEC, field: ["a1", "b1", "c1", "d1"]})
    assert response.status_code == 422
    assert response.get_json()["errors"] == [
        {"field": field, "line": None,
         "message": "At most 3 lines per package field (this one has 4; the limit is MAX_PACKAGE_LINES)."}
    ]


def test_the_form_counts_textarea_lines_against_the_limit(client, auth, app):
    app.config["MAX_PACKAGE_LINES"] = 2
    response = client.post("/specs/new", data={**SPEC, "apt": "curl\ngit\nmake"})
    assert response.status_code == 422
    assert "At most 2 lines per package field (this one has 3" in response.get_data(as_text=True)
    assert ImageSpec.query.count() == 0


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({**SPEC, "base_image": "a" * 513}, "base_image", "At most 512 characters (this one has 513)."),
        ({**SPEC, "pull_secret": "p" * 129}, "pull_secret", "A credential name has at most 128 characters."),
    ],
)
def test_field_lengths_are_bounded(api, body, field, message):
    errors = api.post("/api/v1/specs", json=body).get_json()["errors"]
    assert {"field": field, "line": None, "message": message} in errors


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("username", "u" * 256, "At most 255 characters (this one has 256)."),
        ("password", "p" * 4097, "At most 4096 characters."),
        ("registry", "a" * 250 + ".example", "A registry host, optionally with a port (registry.example.com:5000)."),
    ],
)
def test_credential_fields_are_bounded(api, field, value, message):
    body = {"name": "c", "registry": "ghcr.io", "username": "robot", "password": "pw", field: value}
    errors = api.post("/api/v1/credentials", json=body).get_json()["errors"]
    assert {"field": field, "line": None, "message": message} in errors


def test_a_body_nested_too_deeply_is_a_400(api):
    response = api.post("/api/v1/specs", data="[" * 50000, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.get_json()["error"]


# Headers

@pytest.mark.parametrize("url", ["/login", "/", "/api/v1/specs", "/api/v1/openapi.yaml", "/healthz", "/nowhere",
                                 "/static/css/app.css"])
def test_every_response_has_the_security_headers(client, auth, api, url):
    response = (api if url.startswith("/api/") else client).get(url)
    assert response.headers["Content-Security-Policy"] == PAGE_POLICY
    assert "frame-ancestors 'none'" in PAGE_POLICY and "'unsafe-inline'" not in PAGE_POLICY
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_the_rq_dashboard_gets_its_own_policy(client, auth):
    response = client.get("/ops/rq/")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == DASHBOARD_POLICY
    assert response.headers["X-Frame-Options"] == "DENY"


def test_no_template_has_inline_script_or_style():
    from pathlib import Path
    import re

    for path in Path("templates").rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=", text), path


def test_a_session_ends_after_session_idle_minutes_without_a_request(client, auth, app, monkeypatch):
    def status_later(minutes):
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now(self) + minutes * 60)
        with app.app_context():  # as in a server: no user remembered in g from the last request
            return client.get("/").status_code

    now = TimestampSigner.get_timestamp
    assert status_later(719) == 200  # and renewed: the idle time starts again
    assert status_later(719 + 719) == 200
    assert status_later(719 + 719 + 721) == 302


def test_a_pages_own_polls_do_not_renew_the_session(client, auth, app, monkeypatch):
    """A job page left open (its log's long poll, its row refreshing itself) is not the user:
    it neither re-signs the cookie nor keeps the session alive."""
    from tests.test_pages import make_spec, set_job
    from app.models import JobStatus

    with app.app_context():
        spec, job = make_spec("polled")
        set_job(job, status=JobStatus.RUNNING)
        job_id = job.id
    app.config["LOG_WAIT_SECONDS"] = 0.05
    polls = [f"/jobs/{job_id}/log?offset=0&wait=1", f"/jobs/{job_id}/row", "/specs/polled/row"]

    def later(minutes, path, **kwargs):
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now(self) + minutes * 60)
        with app.app_context():
            return client.get(path, **kwargs)

    now = TimestampSigner.get_timestamp
    assert "Set-Cookie" in later(0, "/").headers  # the user: renewed
    for minutes, path in zip((300, 600, 700), polls):
        response = later(minutes, path, headers={"HX-Request": "true"})
        assert response.status_code in (200, 204), path
        assert "Set-Cookie" not in response.headers, path
    assert later(721, "/").status_code == 302  # 721 minutes after the user's last request


# Throttle

def test_five_failed_sign_ins_for_a_username_then_429_even_with_the_right_password(client, admin):
    actions = AuthActions(client)
    for _ in range(5):
        assert actions.login(password="wrong-password").status_code == 401
    response = actions.login()
    assert response.status_code == 429
    wait = int(response.headers["Retry-After"])
    assert 0 < wait <= 15 * 60
    assert "Too many failed attempts. Try again in 15 minutes." in response.get_data(as_text=True)
    sign_ins = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.action.startswith("signin.")).order_by(AuditEvent.id)
    ).all()
    assert sign_ins == ["signin.failed"] * 5 + ["signin.throttled"]


def test_a_success_resets_the_usernames_count(client, admin):
    actions = AuthActions(client)
    for _ in range(4):
        actions.login(password="wrong-password")
    assert actions.login().status_code == 302
    actions.logout()
    for _ in range(4):
        assert actions.login(password="wrong-password").status_code == 401
    assert actions.login(password=ADMIN_PASSWORD).status_code == 302


def test_twenty_failures_from_one_address_throttle_every_username(client, admin):
    actions = AuthActions(client)
    for n in range(20):
        assert actions.login(username=f"nobody{n}", password="x").status_code == 401
    assert actions.login().status_code == 429


def test_unknown_user_and_wrong_password_read_the_same(client, admin):
    actions = AuthActions(client)
    unknown = actions.login(username="nobody", password="x").get_data(as_text=True)
    wrong = actions.login(password="x").get_data(as_text=True)
    assert "Wrong username or password." in unknown and "Wrong username or password." in wrong


def test_bad_api_tokens_are_throttled_per_address(client, api_token):
    for _ in range(20):
        assert client.get("/api/v1/specs", headers={"Authorization": "Bearer ib_wrong"}).status_code == 401
    response = client.get("/api/v1/specs", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert response.get_json()["error"].startswith("Too many failed attempts.")
    other = client.get("/api/v1/specs", headers={"Authorization": f"Bearer {api_token}"},
                       environ_overrides={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200


def test_the_throttle_keeps_usernames_out_of_redis(client, admin, app):
    from redis import Redis

    AuthActions(client).login(username="my-secret-typed-here", password="x")
    keys = Redis.from_url(app.config["REDIS_URL"]).keys(f"*{app.config['THROTTLE_KEY_PREFIX']}*")
    assert keys and not any(b"my-secret-typed-here" in key for key in keys)


def test_passwords_are_hashed_with_scrypt_unless_password_hash_method_says_otherwise(tmp_path):
    import config
    from app.auth.service import create_or_update_user
    from tests.conftest import make_app

    assert config.Config.PASSWORD_HASH_METHOD == "scrypt"
    for method, prefix in (("scrypt", "scrypt:32768:8:1$"), ("pbkdf2:sha256:2000", "pbkdf2:sha256:2000$")):
        folder = tmp_path / method.replace(":", "-")
        folder.mkdir()
        app = make_app(folder, PASSWORD_HASH_METHOD=method)
        with app.app_context():
            db.create_all()
            user = create_or_update_user("someone", "a-long-enough-password")
            assert user.password_hash.startswith(prefix)
            assert user.check_password("a-long-enough-password") and not user.check_password("wrong")
            db.session.remove()
            db.engine.dispose()


def test_an_unknown_password_hash_method_stops_the_app_at_start(tmp_path):
    from tests.conftest import make_app

    with pytest.raises(ValueError, match="PASSWORD_HASH_METHOD 'md5' is not a werkzeug hash method"):
        make_app(tmp_path, PASSWORD_HASH_METHOD="md5")
