"""Shared fixtures: an app on a fresh database, a client, a signed-in admin, an API token.

The database is SQLite in a temporary folder, or the PostgreSQL named by
DATABASE_URL (scripts/test runs the suite a second time that way). Redis is the
real one, with a queue name of its own per test so no worker picks its jobs up.
"""
import os
import shutil
import uuid

import pytest
from cryptography.fernet import Fernet

from app import create_app
from app.extensions import db

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "correct-horse-battery"


def _database_uri(tmp_path):
    url = os.environ.get("DATABASE_URL")
    if url:
        import config

        os.environ["DATABASE_URL"] = url
        return config._database_url()
    return f"sqlite:///{tmp_path / 'test.db'}"


def make_app(tmp_path, **overrides):
    settings = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": _database_uri(tmp_path),
        "SECRET_KEY": "test-secret",
        "CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "WTF_CSRF_ENABLED": False,
        "RQ_QUEUE": f"test-{uuid.uuid4().hex[:12]}",
        # Sign-in throttle counters of this app alone: parallel test runs never share them.
        "THROTTLE_KEY_PREFIX": f"imagebuilder-test-{uuid.uuid4().hex[:12]}",
        # Unit tests never reach the build host's Podman (deleting a spec asks it to remove images).
        "PODMAN_URL": f"unix://{tmp_path}/no-podman.sock",
        # A cheap hash: ~1000 tests sign in (scrypt, the default, takes ~0.2 s a hash);
        # tests/test_auth.py checks the default and that the setting is what hashes.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }
    settings.update(overrides)
    return create_app(settings)


@pytest.fixture(scope="session")
def _schema(tmp_path_factory):
    """The models' tables, made once a test session (tests only; the product creates its
    schema with migrations, tests/test_migrations.py checks they agree). SQLite: a template
    database file each test gets a copy of. PostgreSQL: the tables of the test database,
    emptied before each test. Returns the template's path (SQLite) or None."""
    folder = tmp_path_factory.mktemp("schema")
    app = make_app(folder)
    with app.app_context():
        db.drop_all()  # a PostgreSQL test database may hold an earlier run's tables
        db.create_all()
        sqlite = db.engine.dialect.name == "sqlite"
        db.session.remove()
        db.engine.dispose()
    return folder / "test.db" if sqlite else None


def _empty_tables():
    """Every row gone and every id counting from 1 again, in one transaction: what a fresh
    schema holds, in a few milliseconds (dropping and creating the tables takes ~150 ms)."""
    statements = [f'DELETE FROM "{table.name}"' for table in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as connection:
        sequences = connection.exec_driver_sql(
            "SELECT sequence_schema, sequence_name FROM information_schema.sequences "
            "WHERE sequence_schema = current_schema()"
        ).all()
        for statement in statements:
            connection.exec_driver_sql(statement)
        for schema, name in sequences:
            connection.exec_driver_sql(f'ALTER SEQUENCE "{schema}"."{name}" RESTART WITH 1')


@pytest.fixture
def app(tmp_path, _schema):
    if _schema is not None:
        shutil.copyfile(_schema, tmp_path / "test.db")
    app = make_app(tmp_path)
    with app.app_context():
        if _schema is None:
            _empty_tables()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def admin(app):
    from app.auth.service import create_or_update_user

    return create_or_update_user(ADMIN_USERNAME, ADMIN_PASSWORD)


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, username=ADMIN_USERNAME, password=ADMIN_PASSWORD):
        return self._client.post("/login", data={"username": username, "password": password})

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client, admin):
    actions = AuthActions(client)
    actions.login()
    return actions


@pytest.fixture
def api_token(admin):
    from app.auth.service import issue_token

    return issue_token(admin)


@pytest.fixture
def api(client, api_token):
    """The test client with the Bearer token header on every call."""

    class Api:
        headers = {"Authorization": f"Bearer {api_token}"}

        def __getattr__(self, method):
            call = getattr(client, method)
            return lambda url, **kw: call(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    return Api()


@pytest.fixture
def queued_rq_jobs(app):
    """The ids RQ holds on this test's queue (what enqueue_build put there)."""
    from app.builds.queue import build_queue

    def ids():
        return build_queue().job_ids

    yield ids
    build_queue().empty()


@pytest.fixture
def private_redis(app):
    """A Redis database of this test's own, empty, for tests that look at every RQ key
    (job hashes are global to a Redis database, and other tests leave theirs behind).
    Claimed with SET NX in database 0, so parallel test runs never share one."""
    from redis import Redis

    shared = Redis.from_url("redis://127.0.0.1:6379/0")
    for number in range(1, 16):
        claim = f"imagebuilder-tests:redis-db:{number}"
        if shared.set(claim, uuid.uuid4().hex, nx=True, ex=600):
            break
    else:
        pytest.skip("every spare Redis database is claimed by another test run")
    url = f"redis://127.0.0.1:6379/{number}"
    connection = Redis.from_url(url)
    connection.flushdb()
    app.config["REDIS_URL"] = url
    yield connection
    connection.flushdb()
    shared.delete(claim)
