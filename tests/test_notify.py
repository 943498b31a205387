"""Webhooks (app/notify.py) with a real local HTTP receiver and a real RQ worker on Redis:
the body a chat receives, the events chosen, a dead webhook that changes nothing."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from rq import SimpleWorker

from app import notify
from app.extensions import db
from app.models import BuildJob, ImageSpec, JobStatus, Trigger


@pytest.fixture
def receiver():
    """A webhook endpoint on a free local port; `received` lists the JSON bodies."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/T0KEN-in-the-path", received
    server.shutdown()


@pytest.fixture
def notify_jobs(app):
    yield lambda: notify.notify_queue().job_ids
    notify.notify_queue().empty()


def failed_job(app) -> BuildJob:
    spec = ImageSpec(name="demo", base_image="localhost/debian:bookworm", apt=[], pip=[], conda=[])
    db.session.add(spec)
    db.session.flush()
    job = BuildJob(spec_id=spec.id, revision=3, input_hash="1a2b3c4d", status=JobStatus.FAILED, spec_snapshot={},
                   error="The build failed: E: Unable to locate package nope", trigger_kind=Trigger.BASE_CHANGED,
                   trigger_detail="sha256:aaa -> sha256:bbb")
    db.session.add(job)
    db.session.commit()
    return job


def run_notify_jobs(app):
    queue = notify.notify_queue()
    SimpleWorker([queue], connection=queue.connection, serializer=queue.serializer).work(burst=True)


def test_a_failed_build_posts_a_chat_message_with_its_fields(app, receiver, notify_jobs):
    url, received = receiver
    app.config.update(NOTIFY_WEBHOOK_URL=url, PUBLIC_URL="https://images.example.com/")
    job = failed_job(app)
    assert notify.job_finished(job.id, JobStatus.FAILED) is None
    (queued,) = notify.notify_queue().jobs
    # The URL is not in the RQ job: it is read from the configuration when the job runs.
    assert "T0KEN" not in json.dumps(queued.args)
    run_notify_jobs(app)
    (body,) = received
    assert body["text"].startswith("Build of demo r3 failed (base-changed by system (sha256:aaa -> sha256:bbb)).")
    assert "E: Unable to locate package nope" in body["text"]
    assert {k: body[k] for k in ("event", "spec", "revision", "status", "image", "job_url")} == {
        "event": "failed", "spec": "demo", "revision": 3, "status": "failed", "image": None,
        "job_url": f"https://images.example.com/jobs/{job.id}"}
    assert body["trigger"] == {"kind": "base-changed", "user": None, "detail": "sha256:aaa -> sha256:bbb"}
    assert "T0KEN" not in json.dumps(body)


def test_only_the_chosen_events_are_sent(app, receiver, notify_jobs):
    url, _received = receiver
    app.config.update(NOTIFY_WEBHOOK_URL=url)
    job = failed_job(app)
    assert notify.send("succeeded", job.id) is False  # not in the default events
    app.config["NOTIFY_EVENTS"] = ("succeeded",)
    assert notify.send("succeeded", job.id) is True
    app.config["NOTIFY_WEBHOOK_URL"] = None
    assert notify.send("succeeded", job.id) is False
    assert len(notify_jobs()) == 1


def test_a_dead_webhook_is_logged_and_left_to_the_retries(app, notify_jobs, caplog):
    app.config.update(NOTIFY_WEBHOOK_URL="http://127.0.0.1:9/hooks/secret-path", NOTIFY_TIMEOUT=1)
    job = failed_job(app)
    assert notify.send("failed", job.id) is True
    run_notify_jobs(app)
    assert "event=webhook_failed host=127.0.0.1:9" in caplog.text
    assert "secret-path" not in caplog.text
    assert db.session.get(BuildJob, job.id).status == JobStatus.FAILED  # the job's row is untouched


def test_redis_down_loses_the_notification_not_the_build(app, caplog):
    app.config.update(NOTIFY_WEBHOOK_URL="http://127.0.0.1:9/", REDIS_URL="redis://127.0.0.1:1/0")
    job = failed_job(app)
    assert notify.send("failed", job.id) is False
    assert "event=notify_not_queued" in caplog.text


def test_an_activation_is_sent_when_chosen(app, receiver, notify_jobs):
    from app.revisions.active import set_active

    url, received = receiver
    app.config.update(NOTIFY_WEBHOOK_URL=url, NOTIFY_EVENTS=("activated",))
    job = failed_job(app)
    job.status, job.image = JobStatus.SUCCEEDED, "127.0.0.1:5000/imagebuilder/demo:r3-1a2b3c4d"
    db.session.commit()
    set_active(job.spec, job)
    run_notify_jobs(app)
    (body,) = received
    assert body["event"] == "activated" and body["text"].startswith("demo r3 is now the active revision")
    assert body["image"] == "127.0.0.1:5000/imagebuilder/demo:r3-1a2b3c4d"
