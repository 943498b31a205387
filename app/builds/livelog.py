"""Live logs: the worker's wake-up after each stored chunk, and the log endpoint's long poll.

The database stays the truth; Redis only wakes readers up. After the worker commits a log
chunk it publishes on the job's channel (`announce_chunk`; channels and the watched keys
carry the install's RQ_QUEUE, so installs sharing a Redis never wake or speed up each
other's jobs of the same id). A reader asks with its cursor and waits (`wait_for_news`):
it registers for the job's wake-ups first, then looks in the database, so no chunk
committed in between is missed; it wakes on a message and looks again, and also looks
every RECHECK_SECONDS on its own (a status change comes without a chunk, and Redis may be
down). A web process holds one Redis subscription for all its waiting requests
(`Wakeups`: a thread of its own, started by the first wait after the process starts or
forks), so a wait opens no connection of its own. Opening the job page and every wait mark
the job watched (`mark_watched`), and while a job is watched the worker writes its chunks
sooner (`Watched`, LOG_LIVE_FLUSH_SECONDS instead of LOG_FLUSH_SECONDS).

Waiting requests hold a web thread each, so a process lets at most LOG_WAIT_SLOTS of them
wait at once (`wait_slot`); a request that finds no free slot is answered at once and its
viewer polls plainly instead (the job page asks again after OVERFLOW_RETRY_SECONDS).

Looking in the database and rendering an answer is work for the CPU, and a process's
threads share one interpreter lock: with every viewer asking again as soon as it is
answered, dozens of log answers would be runnable at once and a page would get a small
share of the lock. So at most LOG_ANSWER_SLOTS requests of a process look or render log
at a time (`answer_turn`); the others sleep until it is theirs (they lose no throughput:
the lock lets one thread run at a time anyway), and pages compete with those few only.
And a process sends at most LOG_ANSWER_RATE answers a second (`pace`), each request in
arrival order: past that, viewers get the chunks written meanwhile in fewer, bigger
answers instead of taking every CPU from the pages. Neither wait holds a database
connection.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, TypeVar

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError

from .queue import redis_connection

log = logging.getLogger(__name__)
T = TypeVar("T")

RECHECK_SECONDS = 1.0
OVERFLOW_RETRY_SECONDS = 2
WATCH_TTL_SECONDS = 30  # a reader renews it with every request (at least every 20 s)
WATCH_CHECK_SECONDS = 0.25  # how often the worker asks whether anyone is watching

_shared: dict[tuple, object] = {}  # the process's semaphores and pace, by setting and size
_shared_lock = threading.Lock()


CHANNEL_PREFIX = "imagebuilder:log:"


def _namespace() -> str:
    """The install's name in Redis keys (its RQ_QUEUE, as in rq_job_id): two installs or
    test runs sharing one Redis each count their job ids from 1."""
    return current_app.config["RQ_QUEUE"]


def _channel(job_id, namespace: str) -> str:
    return f"{CHANNEL_PREFIX}{namespace}:{job_id}"


def _watch_key(job_id: int, namespace: str) -> str:
    return f"imagebuilder:log-watched:{namespace}:{job_id}"


# -- the worker's side --------------------------------------------------------------------------


def worker_redis(url: str) -> Redis:
    """The worker's connection for wake-ups and watch checks: short timeouts, so a Redis that
    hangs costs each chunk a second at most and never stops a build."""
    return Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def announce_chunk(redis, job_id: int) -> None:
    """Wake the job's readers: a chunk (or progress) was committed. Never fails a build."""
    try:
        redis.publish(_channel(job_id, _namespace()), b"1")
    except RedisError:
        log.debug("job=%s could not publish a log wake-up", job_id, exc_info=True)


class Watched:
    """Whether anyone is reading the job's log now; asks Redis at most every WATCH_CHECK_SECONDS."""

    def __init__(self, redis, job_id: int, clock: Callable[[], float] = time.monotonic,
                 namespace: str | None = None):
        self._redis, self._clock = redis, clock
        self._key = _watch_key(job_id, namespace or _namespace())
        self._checked_at: float | None = None
        self._watched = False

    def __call__(self) -> bool:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= WATCH_CHECK_SECONDS:
            self._checked_at = now
            try:
                self._watched = bool(self._redis.exists(self._key))
            except RedisError:
                self._watched = False
        return self._watched


# -- the reader's side --------------------------------------------------------------------------


def mark_watched(job_id: int) -> None:
    try:
        redis_connection().set(_watch_key(job_id, _namespace()), b"1", ex=WATCH_TTL_SECONDS)
    except RedisError:
        log.debug("job=%s could not mark its log watched", job_id, exc_info=True)


def _process_wide(setting: str, value, make: Callable):
    """The process's one object for ``setting`` at ``value`` (one per value, so a test may
    change the setting), made the first time it is asked for."""
    with _shared_lock:
        found = _shared.get((setting, value))
        if found is None:
            found = _shared[(setting, value)] = make()
        return found


def _semaphore(setting: str, minimum: int) -> threading.BoundedSemaphore:
    """The process's semaphore sized by ``setting``."""
    size = max(minimum, int(current_app.config[setting]))
    return _process_wide(setting, size, lambda: threading.BoundedSemaphore(size))


@contextmanager
def _held(semaphore: threading.BoundedSemaphore, timeout: float | None):
    admitted = semaphore.acquire(blocking=False) if timeout is None else semaphore.acquire(timeout=timeout)
    try:
        yield admitted
    finally:
        if admitted:
            semaphore.release()


def wait_slot():
    """True while this request holds one of the process's waiting slots, False when all
    are taken (then answer at once). LOG_WAIT_SLOTS 0: no request waits."""
    return _held(_semaphore("LOG_WAIT_SLOTS", 0), None)


def answer_turn(timeout: float):
    """True while this request holds one of the process's LOG_ANSWER_SLOTS turns to look in
    the database and render log; False when none came free within ``timeout`` seconds."""
    return _held(_semaphore("LOG_ANSWER_SLOTS", 1), timeout)


class Pace:
    """At most ``rate`` log answers a second in this process, in arrival order: each request
    is given the next free moment, 1/rate after the one before (a burst of ``burst`` may
    go at once after a quiet spell), and sleeps until then, holding nothing. So under
    more viewers than the rate, each gets its share, with the chunks written meanwhile."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._next = clock()
        self._lock = threading.Lock()

    def take(self, timeout: float) -> bool:
        """Wait for this request's moment; False (and no moment taken) when it is more
        than ``timeout`` seconds away."""
        interval = 1.0 / self.rate
        with self._lock:
            now = self._clock()
            at = max(now, self._next - (self.burst - 1) * interval)
            if at - now > timeout:
                return False
            self._next = max(self._next, at) + interval
        if at > now:
            self._sleep(at - now)
        return True

    def give_back(self) -> None:
        """A taken moment that was not used (nothing new): the next request may go sooner."""
        with self._lock:
            self._next = max(self._clock(), self._next - 1.0 / self.rate)


def pace() -> Pace | None:
    """The process's pace for log answers (LOG_ANSWER_RATE a second), None when unlimited."""
    rate = float(current_app.config["LOG_ANSWER_RATE"])
    if rate <= 0:
        return None
    return _process_wide("LOG_ANSWER_RATE", rate, lambda: Pace(rate, burst=max(1.0, rate / 4)))


class Wakeups:
    """One pattern subscription to every job's channel for this process, fanning each
    message out to the requests waiting on that job. Reconnects after a Redis failure
    (the waits meanwhile look every RECHECK_SECONDS)."""

    RECONNECT_SECONDS = 1.0

    def __init__(self, url: str):
        self._url = url
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}  # by channel
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self.subscribed = threading.Event()

    def register(self, job_id: int, namespace: str) -> threading.Event:
        self._ensure_listening()
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(_channel(job_id, namespace), set()).add(event)
        return event

    def unregister(self, job_id: int, namespace: str, event: threading.Event) -> None:
        channel = _channel(job_id, namespace)
        with self._lock:
            events = self._waiting.get(channel)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiting[channel]

    def wake(self, channel: str) -> None:
        with self._lock:
            events = list(self._waiting.get(channel, ()))
        for event in events:
            event.set()

    def _ensure_listening(self) -> None:
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()  # a forked child has the dict but not the thread
            self.subscribed.clear()
            self._thread = threading.Thread(target=self._listen, name="log-wakeups", daemon=True)
            self._thread.start()

    def _listen(self) -> None:
        while True:
            pubsub = None
            try:
                pubsub = Redis.from_url(self._url, socket_connect_timeout=2,
                                        health_check_interval=30).pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(CHANNEL_PREFIX + "*")
                self.subscribed.set()
                while True:
                    message = pubsub.get_message(timeout=5)
                    if message and message.get("type") == "pmessage":
                        channel = message.get("channel")
                        self.wake(channel.decode("utf-8", "replace") if isinstance(channel, bytes) else str(channel))
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                log.debug("log wake-ups lost their Redis subscription: %s", exc)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (RedisError, OSError):
                        pass
            time.sleep(self.RECONNECT_SECONDS)


_wakeups: dict[str, Wakeups] = {}
_wakeups_lock = threading.Lock()


def wakeups(url: str | None = None) -> Wakeups:
    """The process's wake-up fan-out for ``url`` (default REDIS_URL)."""
    url = url or current_app.config["REDIS_URL"]
    with _wakeups_lock:
        return _wakeups.setdefault(url, Wakeups(url))


def wait_for_news(job_id: int, look: Callable[[], T | None], timeout: float) -> T | None:
    """Wait until `look()` (a look in the database) finds something, up to `timeout`
    seconds; what it found, or None."""
    deadline = time.monotonic() + timeout
    fanout, namespace = wakeups(), _namespace()
    woken = fanout.register(job_id, namespace)  # before the first look: no chunk slips in between
    try:
        while True:
            found = look()
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            woken.wait(min(RECHECK_SECONDS, left))
            woken.clear()  # a wake-up after this is kept for the next wait
    finally:
        fanout.unregister(job_id, namespace, woken)
