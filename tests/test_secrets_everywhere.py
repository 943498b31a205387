"""With a stored registry credential and API tokens present, every route of the app
(pages, htmx partials, the API, the RQ dashboard), walked with every method it takes,
answers without the password or a token in its body, in any log line, in any Redis key
or value, or in the audit trail."""
import logging
import re

import pytest
from sqlalchemy import select

from app.auth.service import issue_token
from app.builds.queue import rq_job_id
from app.extensions import db
from app.models import AuditEvent, BuildJob, LogChunk

PASSWORD = "walk-Pa55word-9f3c1e"
CREDENTIAL = {"name": "hub", "registry": "registry.example.com", "username": "robot", "password": PASSWORD}
SPEC = {"name": "demo", "base_image": "registry.example.com/base:1", "pull_secret": "hub",
        "apt": ["curl"], "pip": ["requests"], "conda": []}
# Routes that end the walk: they sign out, or remove what the other routes show.
LAST = ("auth.logout", "delete", "revoke", "empty_queue", "compact_queue")


def _redis_dump(connection) -> str:
    parts = []
    for key in connection.scan_iter():
        parts.append(key)
        kind = connection.type(key)
        if kind == b"string":
            parts.append(connection.get(key) or b"")
        elif kind == b"hash":
            parts.extend(f"{k}={v}".encode() for k, v in connection.hgetall(key).items())
        elif kind == b"list":
            parts.extend(connection.lrange(key, 0, -1))
        elif kind == b"set":
            parts.extend(connection.smembers(key))
        elif kind == b"zset":
            parts.extend(connection.zrange(key, 0, -1))
        elif kind == b"stream":
            parts.extend(str(entry).encode() for entry in connection.xrange(key))
    return b"\n".join(p if isinstance(p, bytes) else str(p).encode() for p in parts).decode("utf-8", "replace")


def _arguments(rule, job_id, walk_prefix, queue_name):
    rq = rule.endpoint.startswith("rq_dashboard.")
    values = {
        "name": "hub" if "credentials" in rule.rule else "demo",
        "job_id": rq_job_id(job_id) if rq else job_id,
        "prefix": walk_prefix,
        "path": "no-such-endpoint",
        "filename": "css/app.css" if rule.endpoint == "static" else "no-such-file",
        "instance_number": 0,
        "queue_name": queue_name,
        "registry_name": "queued",
        "per_page": 10,
        "order": "asc",
        "page": 1,
    }
    return {arg: values[arg] for arg in rule.arguments}


def _seen(response) -> str:
    """A response's body and headers, read (and a streamed body closed) at once, so its
    request context ends before the next request's."""
    text = response.get_data().decode("utf-8", "replace") + str(response.headers)
    response.close()
    return text


def test_no_route_shows_logs_or_stores_the_password_or_a_token(app, client, auth, admin, api_token, private_redis,
                                                               caplog):
    caplog.set_level(logging.DEBUG)
    # The dashboard reads the test's own Redis database too.
    app.config["RQ_DASHBOARD_REDIS_URL"] = (app.config["REDIS_URL"],)
    app.redis_conn = private_redis
    # The dashboard's own actions answer 500 on a job they do not fit (requeue of a job that
    # has not failed); the 500 page must hold no secret either, so it is rendered, not raised.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    headers = {"Authorization": f"Bearer {api_token}"}
    assert client.post("/api/v1/credentials", json=CREDENTIAL, headers=headers).status_code == 201
    assert client.post("/api/v1/specs", json=SPEC, headers=headers).status_code == 201
    job_id = db.session.scalar(select(BuildJob.id))
    db.session.add(LogChunk(job_id=job_id, seq=0, text="STEP 1/3: FROM registry.example.com/base:1\n"))
    db.session.commit()
    walk_token = issue_token(admin, "walk")
    secrets = {"password": PASSWORD, "api token": api_token, "walked token": walk_token}

    # Forms and bodies that carry the password into validation errors and re-rendered forms.
    bodies = [
        _seen(client.post("/credentials/new", data={**CREDENTIAL, "registry": "not a host!"})),
        _seen(client.post("/credentials/hub/edit", data={**CREDENTIAL, "username": "has space"})),
        _seen(client.post("/api/v1/credentials", json={**CREDENTIAL, "name": "Bad Name"}, headers=headers)),
        _seen(client.patch("/api/v1/credentials/hub", json={"password": PASSWORD, "registry": "!"}, headers=headers)),
        _seen(client.post("/login", data={"username": "admin", "password": PASSWORD})),
    ]
    auth.login()

    # The dashboard first, while the job's RQ entry exists (cancel and rebuild drop it).
    rules = sorted(app.url_map.iter_rules(), key=lambda r: (
        any(word in r.endpoint for word in LAST), not r.endpoint.startswith("rq_dashboard."), r.rule))
    walked = []
    for rule in rules:
        url = app.url_map.bind("localhost").build(rule.endpoint, _arguments(rule, job_id, walk_token[:10],
                                                                              app.config["RQ_QUEUE"]))
        api = rule.rule.startswith("/api/")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}, key=lambda m: m != "GET"):
            call = getattr(client, method.lower())
            response = call(url, headers=headers if api else {}, **({"json": {}} if api else {"data": {}}))
            # /readyz says 503 here: the unit tests have no Podman.
            if not rule.endpoint.startswith(("rq_dashboard.", "ops.readyz")):
                assert response.status_code < 500, (method, url, response.status_code)
            bodies.append(_seen(response))
            walked.append((method, rule.rule))
    assert len(walked) >= 60, walked

    texts = {
        "responses": "\n".join(bodies),
        "log lines": "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records]),
        "redis": _redis_dump(private_redis),
        "audit rows": "\n".join(str((e.actor, e.target, e.changes)) for e in db.session.scalars(select(AuditEvent))),
    }
    for where, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in the {where}"
    # The walk did reach the pages that hold the secrets' neighbours.
    assert "robot" in texts["responses"] and walk_token[:10] in texts["responses"]
    assert re.search(r"credential\.changed", " ".join(e.action for e in db.session.scalars(select(AuditEvent))))
