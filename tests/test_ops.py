"""Health checks, the footer status strip, the RQ dashboard and structured logs."""
import http.server
import logging
import re
import socketserver
import threading

import pytest
from flask import render_template_string
from rq import Worker

from app.builds.control import claim_job
from app.builds.queue import build_queue, rq_job_id
from app.ops.logging import KeyValueFormatter, configure_logging, job_logger, kv
from app.specs.service import create_spec
from config import Config
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, make_app

SPEC = {"name": "demo", "base_image": "debian:bookworm", "apt": "curl\n", "pip": "", "conda": ""}


class _PingHandler(http.server.BaseHTTPRequestHandler):
    """Answers Podman's /_ping like the service does; stands in for it at the socket."""

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()

    do_GET = do_HEAD

    def address_string(self):
        return "podman-socket"

    def log_message(self, *args):
        pass


@pytest.fixture
def podman_socket(tmp_path):
    path = tmp_path / "podman.sock"
    server = socketserver.ThreadingUnixStreamServer(str(path), _PingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{path}"
    server.shutdown()
    server.server_close()


# Health


def test_healthz_answers_without_login_or_database(tmp_path):
    broken = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/no/such/dir/x.db")
    response = broken.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "ok"


def test_readyz_is_ok_when_database_redis_and_podman_answer(app, client, podman_socket):
    app.config["PODMAN_URL"] = podman_socket
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json == {"status": "ok", "failing": {}, "checked": ["database", "podman", "redis"]}


def test_readyz_names_each_failing_part(tmp_path):
    broken = make_app(
        tmp_path,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/no/such/dir/x.db",
        REDIS_URL="redis://127.0.0.1:1/0",
        PODMAN_URL=f"unix://{tmp_path}/missing.sock",
    )
    response = broken.test_client().get("/readyz")
    assert response.status_code == 503
    failing = response.json["failing"]
    assert sorted(failing) == ["database", "podman", "redis"]
    assert "unable to open database file" in failing["database"]
    assert "Connection refused" in failing["redis"]
    assert "missing.sock" in failing["podman"] or "No such file" in failing["podman"]


def test_readyz_with_only_podman_down(app, client, tmp_path):
    app.config["PODMAN_URL"] = f"unix://{tmp_path}/missing.sock"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert list(response.json["failing"]) == ["podman"]


@pytest.mark.integration
def test_readyz_against_the_real_podman_service(app, client):
    # The unit-test app points at no Podman; this one asks the build user's real service.
    app.config["PODMAN_URL"] = Config.PODMAN_URL
    response = client.get("/readyz")
    assert response.status_code == 200, response.json


# Footer status strip


def test_status_strip_needs_login(client):
    response = client.get("/ops/status")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_status_strip_counts_workers_queue_and_running_builds(app, client, auth, private_redis):
    running = create_spec(SPEC).job
    assert claim_job(running.id, "worker-1")
    create_spec({**SPEC, "name": "second"})
    worker = Worker([build_queue()], connection=private_redis, name="test-worker")
    worker.register_birth()
    try:
        html = client.get("/ops/status").get_data(as_text=True)
    finally:
        worker.register_death()

    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "1 worker alive · 2 queued · 1 running · queue dashboard" in text
    assert 'href="/ops/rq/"' in html
    assert 'id="ops-status"' in html
    assert 'hx-trigger="every 10s"' in html  # no `load`: a swapped-in strip must not refetch at once


def test_status_strip_without_workers_says_builds_wait(app, client, auth, private_redis):
    html = client.get("/ops/status").get_data(as_text=True)
    assert "0 workers alive" in html
    assert "queued builds wait" in html


def test_status_strip_placeholder_loads_itself(app):
    with app.test_request_context():
        html = render_template_string('{% include "ops/_status.html" %}')
    assert 'hx-get="/ops/status"' in html
    assert 'hx-trigger="load, every 10s"' in html


def test_status_strip_with_redis_down(app, client, auth):
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    response = client.get("/ops/status")
    assert response.status_code == 200
    assert "Queue unreachable" in response.get_data(as_text=True)


# RQ dashboard


def test_rq_dashboard_needs_login(client):
    for path in ("/ops/rq/", "/ops/rq/0/data/queues.json", "/ops/rq/static/js/jquery.min.js"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"]
    response = client.post("/ops/rq/queue/builds/failed/empty")
    assert response.status_code == 302


def test_rq_dashboard_for_a_signed_in_admin(app, client, auth, private_redis):
    # The dashboard took its connection when the app was made: point it at this test's Redis.
    app.config["RQ_DASHBOARD_REDIS_URL"] = (app.config["REDIS_URL"],)
    app.redis_conn = private_redis
    job = create_spec(SPEC).job
    assert client.get("/ops/rq/").status_code == 200
    queue = app.config["RQ_QUEUE"]
    queues = client.get("/ops/rq/0/data/queues.json").json["queues"]
    assert queue in [entry["name"] for entry in queues]
    # It reads the build queue's JSON-serialized jobs.
    jobs = client.get(f"/ops/rq/0/data/jobs/{queue}/queued/10/asc/1.json").json["jobs"]
    assert [(entry["id"], entry["description"]) for entry in jobs] == [
        (rq_job_id(job.id), f"app.builds.runner.run_build({job.id})")
    ]


def test_two_apps_in_one_process_both_serve_the_dashboard(app, client, auth, tmp_path):
    second = make_app(tmp_path)
    second_client = second.test_client()
    second_client.post("/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    assert second_client.get("/ops/rq/").status_code == 200
    assert client.get("/ops/rq/").status_code == 200


def test_rq_dashboard_actions_pass_csrf_with_the_cookie_it_sends(app, tmp_path, admin):
    guarded = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = guarded.test_client()
    login_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
    client.post("/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD, "csrf_token": token})
    assert client.get("/ops/rq/").status_code == 200
    cookie = client.get_cookie("_csrf_token", path="/ops/rq")
    assert cookie is not None

    with guarded.app_context():
        queue = build_queue()
        queue.enqueue("app.builds.runner.run_build", 1)
        action = f"/ops/rq/queue/{queue.name}/queued/empty"
        assert client.post(action).status_code == 400  # no token: refused
        assert queue.count == 1
        assert client.post(action, headers={"X-CSRFToken": cookie.value}).status_code == 200
        assert queue.count == 0


# Structured logs


def test_one_log_line_per_request(app, client, auth, caplog):
    with caplog.at_level(logging.INFO, logger="app.request"):
        client.get("/healthz")
        client.get("/ops/status?x=1")
    lines = [r.getMessage() for r in caplog.records if r.name == "app.request"]
    assert re.fullmatch(r"method=GET path=/healthz status=200 duration_ms=\d+\.\d user=admin", lines[0])
    assert re.fullmatch(r"method=GET path=/ops/status status=200 duration_ms=\d+\.\d user=admin", lines[1])


def test_request_log_of_anonymous_and_api_users(app, client, api, caplog):
    with caplog.at_level(logging.INFO, logger="app.request"):
        client.get("/")
        api.get("/api/v1/specs")
    lines = [r.getMessage() for r in caplog.records if r.name == "app.request"]
    assert lines[0].startswith("method=GET path=/ status=302 ") and lines[0].endswith(" user=-")
    assert lines[1].startswith("method=GET path=/api/v1/specs status=200 ") and lines[1].endswith(" user=admin")


def test_job_logger_puts_the_job_id_in_each_line(caplog):
    with caplog.at_level(logging.INFO, logger="app.builds"):
        job_logger(42).info("event=started worker=%s", kv("host a:1"))
    record = caplog.records[-1]
    line = KeyValueFormatter().format(record)
    assert re.fullmatch(
        r'ts=\S+ level=INFO logger=app\.builds job=42 event=started worker="host a:1"', line
    ), line


def test_values_are_quoted_when_they_need_it():
    assert kv("plain") == "plain"
    assert kv(None) == "-"
    assert kv('say "hi"\nbye') == '"say \\"hi\\"\\nbye"'


def test_configure_logging_adds_one_handler_however_many_apps(app, tmp_path):
    make_app(tmp_path)
    configure_logging()
    ours = [h for h in logging.getLogger().handlers if isinstance(h.formatter, KeyValueFormatter)]
    assert len(ours) == 1


def test_every_page_footer_carries_the_status_strip(client, auth):
    html = client.get("/").get_data(as_text=True)
    footer = html[html.index("<footer"):]
    assert 'id="ops-status"' in footer and 'hx-trigger="load, every 10s"' in footer


def test_login_page_has_no_status_strip(client):
    assert 'id="ops-status"' not in client.get("/login").get_data(as_text=True)
