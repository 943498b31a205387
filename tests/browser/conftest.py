"""Browser-test fixtures: the app served for real, an admin, and Debian's Chromium through Playwright.

``live_server`` runs the app in a thread (werkzeug's ``make_server``, a free port) on a
fresh SQLite database made by the migrations, with an RQ queue of its own so no worker
picks its jobs up. A test that needs other settings (a real worker, a shared queue)
overrides the ``live_server_config`` fixture, or calls ``live_server_factory(**config)``.
"""
from __future__ import annotations

import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import flask_migrate
import pytest
from cryptography.fernet import Fernet
from flask import Flask
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from app import create_app
from app.auth.service import create_or_update_user
from app.builds.queue import build_queue
from app.extensions import db
from scratchdb import drop_scratch_database, scratch_database_uri

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "correct-horse-battery"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def migrate_keeping_logging():
    """``flask db upgrade``. Alembic's env.py calls logging.config.fileConfig, which resets
    the root logger and disables every logger it does not name; put them back, or the
    tests after this one would see no log records."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    loggers = [obj for obj in logging.root.manager.loggerDict.values() if isinstance(obj, logging.Logger)]
    disabled = {logger: logger.disabled for logger in loggers}
    flask_migrate.upgrade()
    root.setLevel(level)
    root.handlers[:] = handlers
    for logger, was_disabled in disabled.items():
        logger.disabled = was_disabled


@dataclass
class LiveServer:
    app: Flask
    url: str

    def app_context(self):
        """For a test that reads or changes the server's database directly."""
        return self.app.app_context()


@pytest.fixture
def live_server_config():
    """Settings for ``live_server``, on top of the defaults; override it to change them."""
    return {}


@pytest.fixture
def live_server_factory(tmp_path):
    servers = []

    def start(**overrides) -> LiveServer:
        settings = {
            "SQLALCHEMY_DATABASE_URI": scratch_database_uri(tmp_path / f"live-{len(servers)}.db"),
            "SECRET_KEY": uuid.uuid4().hex,
            "CREDENTIALS_KEY": Fernet.generate_key().decode(),
            "RQ_QUEUE": f"browser-test-{uuid.uuid4().hex[:12]}",
            "THROTTLE_KEY_PREFIX": f"browser-test-{uuid.uuid4().hex[:12]}",
            **overrides,
        }
        app = create_app(settings)
        with app.app_context():
            migrate_keeping_logging()
            create_or_update_user(ADMIN_USERNAME, ADMIN_PASSWORD)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
        thread.start()
        servers.append((app, server, thread))
        return LiveServer(app=app, url=f"http://127.0.0.1:{server.server_port}")

    yield start

    for app, server, thread in servers:
        server.shutdown()
        thread.join(timeout=10)
        with app.app_context():
            build_queue().delete(delete_jobs=True)
            db.engine.dispose()
        drop_scratch_database(app.config["SQLALCHEMY_DATABASE_URI"])


@pytest.fixture
def live_server(live_server_factory, live_server_config) -> LiveServer:
    return live_server_factory(**live_server_config)


@pytest.fixture
def build_stack(tmp_path):
    """The real build services and a worker's settings (tests/integration/support.py); the
    test starts the worker. A module whose live server shares them overrides
    ``live_server_config`` with ``build_stack.settings``."""
    from integration.support import Stack, start_services

    try:
        services = start_services()
    except Exception as exc:
        pytest.fail(f"The integration services could not be started: {exc}", pytrace=False)
    workdir = tmp_path / "stack"
    workdir.mkdir()
    stack = Stack(workdir=workdir, services=services)
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"No Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium).")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Every Content-Security-Policy violation (a blocked inline script or style attribute, a
# blocked resource, eval) is reported to the console, where the fixture below collects it.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || location.href}:${event.lineNumber}`);
});
"""


@pytest.fixture
def page(browser, live_server):
    """A fresh browser tab on the live server; JavaScript errors and any
    Content-Security-Policy violation fail the test."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    errors = []
    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    tab.on(
        "console",
        lambda msg: "Content Security Policy" in msg.text and errors.append(f"console: {msg.text}"),
    )
    # 401/422 answers are the app working as meant; anything else logged as an error is not.
    tab.on(
        "console",
        lambda msg: msg.type == "error"
        and not msg.text.startswith("Failed to load resource")
        and errors.append(f"console: {msg.text}"),
    )
    yield tab
    context.close()
    assert not errors, errors


@pytest.fixture
def signed_in(page):
    """The tab, signed in as the admin, on the spec list."""
    page.goto("/login")
    page.fill("#username", ADMIN_USERNAME)
    page.fill("#password", ADMIN_PASSWORD)
    page.click("main button[type=submit]")  # not the header's language buttons
    page.wait_for_url("**/")
    return page


@pytest.fixture
def screenshot(page):
    """screenshot("03-add-preview") saves test-artifacts/screenshots/03-add-preview.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
