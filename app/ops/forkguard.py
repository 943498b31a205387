"""Forking safely beside the worker's own threads.

RQ forks a work horse for each job from the worker's main thread, at any moment. Beside
it the worker runs threads of its own: the reconciler (app/ops/reconcile.py) and the
base-image watch (app/watch/base_check.py). A lock one of them holds at the moment of the
fork stays held for ever in the horse, where no thread will release it. Seen in CI: the
reconciler's first pass was configuring SQLAlchemy's mappers (``_CONFIGURE_MUTEX``) when
a horse was forked; the horse's first query waited on that mutex until RQ killed it ten
minutes later, its job still queued. SQLite's and the TLS library's locks are the same
hazard.

This module owns the rule that prevents it: each pass of such a thread runs inside
``no_fork()``, and every ``os.fork`` (RQ's horses, its scheduler process) waits until no
pass is running (``os.register_at_fork``). A fork is delayed by at most the pass in
progress; a thread never waits for a fork. The worker also configures the mappers once
before it starts any thread (``prepare_for_forks``).
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager

_lock = threading.RLock()


def _before_fork() -> None:
    _lock.acquire()


def _after_fork_in_parent() -> None:
    _lock.release()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # the child has none of the parent's threads


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


@contextmanager
def no_fork():
    """Hold off forks of this process while the block runs (one pass of a thread)."""
    lock = _lock
    with lock:
        yield


def prepare_for_forks() -> None:
    """Work done once, before any thread starts, so no thread is inside it at a fork."""
    from sqlalchemy.orm import configure_mappers

    configure_mappers()
