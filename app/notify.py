"""Webhooks: tell the team's chat when a build fails, succeeds, is activated, or a base moved.

With NOTIFY_WEBHOOK_URL set, each event named in NOTIFY_EVENTS (``failed``, ``succeeded``,
``activated``, ``base-changed``) becomes an RQ job of its own on the ``<RQ_QUEUE>-notify``
queue, enqueued after the job's row is committed. The job POSTs a JSON body: a
Slack/Mattermost-compatible ``text`` plus the fields (event, spec, revision, status, image,
trigger, job URL). The webhook URL is read from the configuration when the job runs, never
carried in job arguments (a Slack URL is a credential), and no credential is in the body. A
POST that fails or times out (NOTIFY_TIMEOUT) is logged and retried by RQ
(NOTIFY_RETRY_INTERVALS); a dead webhook never delays or fails a build.
"""
from __future__ import annotations

import logging
import urllib.parse

import requests
from flask import current_app, has_app_context
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from .builds.queue import redis_connection
from .extensions import db
from .models import BuildJob, ImageSpec
from .ops.logging import kv
from .revisions.events import active_revision_changed

log = logging.getLogger(__name__)

DELIVER_FUNCTION = "app.notify.deliver"
EVENTS = ("failed", "succeeded", "activated", "base-changed")


def notify_queue(connection=None) -> Queue:
    return Queue(f"{current_app.config['RQ_QUEUE']}-notify", connection=connection or redis_connection(),
                 serializer=JSONSerializer)


def wanted(event: str) -> bool:
    config = current_app.config
    return bool(config.get("NOTIFY_WEBHOOK_URL")) and event in config.get("NOTIFY_EVENTS", ())


def payload(event: str, job: BuildJob) -> dict:
    """The body for `event` about `job` (pure but for the job URL's base)."""
    spec = job.spec.name
    trigger = {"kind": job.trigger_kind, "user": job.trigger_user, "detail": job.trigger_detail}
    job_url = urllib.parse.urljoin(current_app.config["PUBLIC_URL"].rstrip("/") + "/", f"jobs/{job.id}")
    headline = {
        "failed": f"Build of {spec} r{job.revision} failed",
        "succeeded": f"Build of {spec} r{job.revision} succeeded",
        "activated": f"{spec} r{job.revision} is now the active revision",
        "base-changed": f"The base image of {spec} moved: rebuilding as r{job.revision}",
    }[event]
    why = f"{trigger['kind']} by {trigger['user'] or 'system'}"
    if trigger["detail"]:
        why += f" ({trigger['detail']})"
    lines = [f"{headline} ({why}).", job.image or "", job.error or "", job_url]
    return {
        "text": "\n".join(line for line in lines if line),
        "event": event,
        "spec": spec,
        "revision": job.revision,
        "status": job.status,
        "image": job.image,
        "digest": job.digest,
        "error": job.error,
        "trigger": trigger,
        "job_url": job_url,
    }


def send(event: str, job_id: int) -> bool:
    """Enqueue the webhook for `event` about a committed job; True when one was queued.
    Never raises: a notification must not break what it reports on."""
    try:
        if not wanted(event):
            return False
        job = db.session.get(BuildJob, job_id)
        if job is None:
            return False
        body = payload(event, job)
        intervals = list(current_app.config["NOTIFY_RETRY_INTERVALS"])
        notify_queue().enqueue(
            DELIVER_FUNCTION, body,
            job_timeout=int(current_app.config["NOTIFY_TIMEOUT"]) + 10,
            retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
            result_ttl=3600, failure_ttl=7 * 24 * 3600,
        )
    except Exception as exc:  # Redis down, or anything else: the build's outcome stands
        log.warning("job=%s event=notify_not_queued notify_event=%s error=%s", job_id, event,
                    kv(f"{type(exc).__name__}: {exc}"))
        return False
    log.info("job=%s event=notify_queued notify_event=%s", job_id, event)
    return True


def job_finished(job_id: int, status: str) -> None:
    """The runner's one call once a job's final state is committed."""
    send(status, job_id)


def deliver(body: dict) -> int:
    """RQ job: POST `body` to NOTIFY_WEBHOOK_URL; raises on failure so RQ retries."""
    if has_app_context():
        return _post(body)
    from . import create_app

    with create_app().app_context():
        return _post(body)


def _post(body: dict) -> int:
    url = current_app.config.get("NOTIFY_WEBHOOK_URL")
    if not url:
        return 0
    host = urllib.parse.urlsplit(url).netloc.rpartition("@")[2]  # the URL's path may hold a token: never logged
    try:
        response = requests.post(url, json=body, timeout=float(current_app.config["NOTIFY_TIMEOUT"]))
    except requests.RequestException as exc:
        log.warning("event=webhook_failed host=%s notify_event=%s spec=%s error=%s", host, body.get("event"),
                    body.get("spec"), type(exc).__name__)
        raise WebhookFailed(f"webhook at {host}: {type(exc).__name__}") from None
    if response.status_code >= 300:
        log.warning("event=webhook_failed host=%s notify_event=%s spec=%s status=%s", host, body.get("event"),
                    body.get("spec"), response.status_code)
        raise WebhookFailed(f"webhook at {host} answered HTTP {response.status_code}")
    log.info("event=webhook_sent host=%s notify_event=%s spec=%s", host, body.get("event"), body.get("spec"))
    return response.status_code


class WebhookFailed(Exception):
    """The webhook did not take the notification; RQ tries again."""


@active_revision_changed.connect
def _on_activated(spec: ImageSpec, job: BuildJob, previous=None, **_):
    send("activated", job.id)
