"""Throttling of failed sign-ins and bad API tokens, counted in the app's Redis.

Flask-Limiter (a limiter of the app's own, so each app has its own key prefix) keeps
moving windows of failures: per username (hashed, so a password typed into the
username field never reaches Redis) and per client address. Once a window is full
the next try is answered 429 with the seconds to wait, right or wrong password alike;
a success clears the username's window. Bad API tokens fill a window per address of
their own, and a full one refuses every token from that address until it empties.

Redis being down must not lock every admin out: then nothing is counted, and a
warning is logged.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time

from flask import current_app, request
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_limiter import Limiter
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
EXTENSION = "signin_throttle"
UNAVAILABLE = (RedisError, StorageError)


class Throttle:
    def __init__(self, app):
        config = app.config
        self.limiter = Limiter(
            key_func=lambda: request.remote_addr or "-",
            storage_uri=config["REDIS_URL"],
            strategy="moving-window",
            key_prefix=config["THROTTLE_KEY_PREFIX"],
        )
        self.limiter.init_app(app)
        self.prefix = config["THROTTLE_KEY_PREFIX"]
        minutes = config["SIGNIN_FAILURE_WINDOW_MINUTES"]
        self.per_user = RateLimitItemPerMinute(config["SIGNIN_FAILURES_PER_USER"], minutes)
        self.per_address = RateLimitItemPerMinute(config["SIGNIN_FAILURES_PER_ADDRESS"], minutes)

    def windows(self, kind: str, username: str | None):
        """(limit, identifiers) of each window a try of ``kind`` ('signin', 'token') counts in."""
        address = request.remote_addr or "-"
        yield self.per_address, (self.prefix, f"{kind}-address", address)
        if username is not None:
            digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
            yield self.per_user, (self.prefix, f"{kind}-user", digest)


def _throttle() -> Throttle:
    return current_app.extensions[EXTENSION]


def seconds_to_wait(kind: str, username: str | None = None) -> int | None:
    """Seconds until a try is allowed again, or None when it is allowed now."""
    throttle = _throttle()
    waits = []
    try:
        for limit, identifiers in throttle.windows(kind, username):
            if not throttle.limiter.limiter.test(limit, *identifiers):
                reset_at, _remaining = throttle.limiter.limiter.get_window_stats(limit, *identifiers)
                waits.append(max(1, math.ceil(reset_at - time.time())))
    except UNAVAILABLE as exc:
        log.warning("throttle unavailable, not counting: %s", exc)
        return None
    return max(waits) if waits else None


def record_failure(kind: str, username: str | None = None) -> None:
    throttle = _throttle()
    try:
        for limit, identifiers in throttle.windows(kind, username):
            throttle.limiter.limiter.hit(limit, *identifiers)
    except UNAVAILABLE as exc:
        log.warning("throttle unavailable, not counting: %s", exc)


def record_success(kind: str, username: str) -> None:
    """The username's failures are forgiven; the address's stay counted."""
    throttle = _throttle()
    try:
        for limit, identifiers in throttle.windows(kind, username):
            if limit is throttle.per_user:
                throttle.limiter.limiter.clear(limit, *identifiers)
    except UNAVAILABLE as exc:
        log.warning("throttle unavailable, not counting: %s", exc)


def wait_message(seconds: int) -> str:
    if seconds >= 60:
        return ngettext("Too many failed attempts. Try again in %(num)d minute.",
                        "Too many failed attempts. Try again in %(num)d minutes.", math.ceil(seconds / 60))
    return _("Too many failed attempts. Try again in %(num)d seconds.", num=seconds)


def register_throttle(app) -> None:
    app.extensions[EXTENSION] = Throttle(app)
