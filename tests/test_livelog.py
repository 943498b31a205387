"""Live logs (app/builds/livelog.py): the job page's long poll waits for the worker's next
chunk and answers with it, gives up with a 204 after LOG_WAIT_SECONDS, answers at once when
no waiting slot is free; the worker's log writer flushes sooner while someone reads."""
import logging
import re
import threading

from sqlalchemy import event

from app.builds import livelog
from app.builds.logs import append_log_chunk
from app.builds.logwriter import LogWriter
from app.builds.queue import redis_connection
from app.extensions import db
from app.models import BuildJob, JobStatus
from test_pages import make_spec, poller_url, set_job


def running_job():
    _, job = make_spec("demo")
    set_job(job, status=JobStatus.RUNNING)
    return job


def waiting_url(client, job):
    return poller_url(client.get(f"/jobs/{job.id}").get_data(as_text=True), wait=True)


def test_a_waiting_poll_answers_with_the_chunk_the_worker_commits(app, client, auth):
    job = running_job()
    url = waiting_url(client, job)
    app.config["LOG_WAIT_SECONDS"] = 30
    redis = redis_connection()

    def worker_writes():
        with app.app_context():
            threading.Event().wait(0.5)  # the request is waiting by then
            append_log_chunk(db.session.get(BuildJob, job.id), "fresh line <b>\n")
            db.session.commit()
            livelog.announce_chunk(redis, job.id)

    writer = threading.Thread(target=worker_writes)
    writer.start()
    response = client.get(url)
    writer.join()
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert '<span class="lt">fresh line &lt;b&gt;</span>' in body and 'id="L1"' in body
    # Reading it live marked the job watched, for the worker's faster flushes.
    assert livelog.Watched(redis, job.id)()


def test_a_waiting_poll_with_nothing_new_ends_in_a_204_to_ask_again_at_once(app, client, auth):
    job = running_job()
    url = waiting_url(client, job)
    app.config["LOG_WAIT_SECONDS"] = 0.3
    response = client.get(url)
    assert response.status_code == 204 and response.data == b""
    assert response.headers["Retry-After"] == "0"


def test_a_status_change_ends_the_wait(app, client, auth):
    job = running_job()
    url = waiting_url(client, job)
    app.config["LOG_WAIT_SECONDS"] = 30

    def job_finishes():
        with app.app_context():
            threading.Event().wait(0.3)
            set_job(db.session.get(BuildJob, job.id), status=JobStatus.SUCCEEDED)

    finisher = threading.Thread(target=job_finishes)
    finisher.start()
    response = client.get(url)
    finisher.join()
    assert response.status_code == 200 and "badge-succeeded" in response.get_data(as_text=True)


def test_when_every_waiting_slot_is_taken_the_poll_answers_at_once(app, client, auth):
    job = running_job()
    url = waiting_url(client, job)
    app.config.update(LOG_WAIT_SLOTS=0, LOG_WAIT_SECONDS=30)
    response = client.get(url)
    assert response.status_code == 204
    assert response.headers["Retry-After"] == str(livelog.OVERFLOW_RETRY_SECONDS)


def test_past_the_waiting_slots_a_poll_with_news_gets_it_at_once(app, client, auth):
    job = running_job()
    url = waiting_url(client, job)
    append_log_chunk(db.session.get(BuildJob, job.id), "news for a viewer past the slots\n")
    db.session.commit()
    app.config.update(LOG_WAIT_SLOTS=0, LOG_WAIT_SECONDS=30)
    response = client.get(url)
    assert response.status_code == 200
    assert "news for a viewer past the slots" in response.get_data(as_text=True)


def test_a_waiting_poll_holds_no_pooled_database_connection(app, client, auth):
    """24 waits a process would otherwise take the whole pool, and pages would queue for it."""
    job = running_job()
    url = waiting_url(client, job)
    app.config["LOG_WAIT_SECONDS"] = 30
    db.session.commit()
    fanout = livelog.wakeups()
    channel = livelog._channel(job.id, app.config["RQ_QUEUE"])
    seen = {}

    def worker_writes_once_the_poll_waits():
        with app.app_context():
            for _ in range(200):
                if fanout._waiting.get(channel):
                    break
                threading.Event().wait(0.02)
            seen["waiting"] = bool(fanout._waiting.get(channel))
            seen["checked out"] = db.engine.pool.checkedout()
            append_log_chunk(db.session.get(BuildJob, job.id), "after the look\n")
            db.session.commit()
            livelog.announce_chunk(redis_connection(), job.id)

    writer = threading.Thread(target=worker_writes_once_the_poll_waits)
    writer.start()
    response = client.get(url)
    writer.join()
    assert seen == {"waiting": True, "checked out": 0}
    assert response.status_code == 200 and "after the look" in response.get_data(as_text=True)


def test_a_log_answer_costs_four_queries_and_its_log_line_names_its_user(app, client, auth, caplog):
    """The answer's commits expire what the request loaded; the request log line must not
    reload the user, nor the look load the spec apart from its job (a query each per log
    request, at 50 viewers' request rates)."""
    job = running_job()
    url = waiting_url(client, job)
    append_log_chunk(db.session.get(BuildJob, job.id), "a line\n")
    db.session.commit()
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with caplog.at_level(logging.INFO, logger="app.request"):
            response = client.get(url)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert response.status_code == 200 and "a line" in response.get_data(as_text=True)
    tables = [re.search(r"\bFROM\s+(\w+)", s).group(1) for s in statements]
    # The session's user; the job (404 or not, may it grow); the look: job with its spec, chunks.
    assert tables == ["users", "build_jobs", "build_jobs", "log_chunks"]
    assert re.search(r"\bJOIN\s+image_specs\b", statements[2])
    lines = [r.getMessage() for r in caplog.records if r.name == "app.request"]
    assert lines[-1].startswith("method=GET path=/jobs/") and lines[-1].endswith(" user=admin")


def test_log_answers_take_turns_and_a_poll_sleeps_until_a_turn_is_free(app, client, auth):
    """LOG_ANSWER_SLOTS 1: while another request holds the process's one turn, a poll with
    news waits for it (it never renders beside it), then answers with everything new."""
    job = running_job()
    url = waiting_url(client, job)
    append_log_chunk(db.session.get(BuildJob, job.id), "first\n")
    append_log_chunk(db.session.get(BuildJob, job.id), "second\n")
    db.session.commit()
    app.config.update(LOG_ANSWER_SLOTS=1, LOG_WAIT_SECONDS=30)
    held, release = threading.Event(), threading.Event()

    def another_answer():
        with app.test_request_context():
            with livelog.answer_turn(5) as turn:
                assert turn
                held.set()
                release.wait(10)

    holder = threading.Thread(target=another_answer)
    holder.start()
    assert held.wait(5)
    answered = {}

    def poll():
        answered["response"] = client.get(url)

    poller = threading.Thread(target=poll)
    poller.start()
    poller.join(timeout=0.5)
    assert poller.is_alive(), "the poll answered while the only turn was taken"
    release.set()
    poller.join(timeout=10)
    holder.join(timeout=10)
    body = answered["response"].get_data(as_text=True)
    assert answered["response"].status_code == 200
    assert "first" in body and "second" in body


def test_a_turn_that_never_comes_free_ends_in_a_plain_poll_answer(app, monkeypatch):
    app.config["LOG_ANSWER_SLOTS"] = 1
    with app.test_request_context():
        with livelog.answer_turn(1) as first:
            with livelog.answer_turn(0.05) as second:
                assert (first, second) == (True, False)
        with livelog.answer_turn(0.05) as again:
            assert again  # released with its request


def test_a_finished_job_is_never_held(app, client, auth):
    job = running_job()
    url = waiting_url(client, job)
    set_job(job, status=JobStatus.FAILED, error="boom")
    app.config["LOG_WAIT_SECONDS"] = 30
    response = client.get(url)
    assert response.status_code == 200 and "hx-get" not in response.get_data(as_text=True)


def test_the_log_writer_flushes_sooner_while_watched():
    stored, now, watched = [], [0.0], [False]
    writer = LogWriter(lambda text, progress, truncated: stored.append(text), max_bytes=10_000,
                       flush_seconds=0.5, live_flush_seconds=0.05, clock=lambda: now[0],
                       watched=lambda: watched[0])
    now[0] = 0.1
    writer.line("one")
    assert stored == []  # not watched: held for the 0.5 s batch
    watched[0] = True
    writer.line("two")
    assert stored == ["one\ntwo\n"]


def test_watched_asks_redis_only_now_and_then():
    class CountingRedis:
        calls = 0

        def exists(self, key):
            self.calls += 1
            return 1

    redis, now = CountingRedis(), [0.0]
    watched = livelog.Watched(redis, 7, clock=lambda: now[0], namespace="test")
    assert watched() and watched()
    now[0] = livelog.WATCH_CHECK_SECONDS + 0.01
    assert watched()
    assert redis.calls == 2


def _unique_job_id() -> int:
    import uuid

    return 10**12 + uuid.uuid4().int % 10**9  # no real job of any test run has it


def test_one_subscription_per_process_wakes_every_waiter_of_that_job_only(app, monkeypatch):
    # With the periodic look pushed past the wait, only a Redis wake-up can end it in time.
    monkeypatch.setattr(livelog, "RECHECK_SECONDS", 60)
    fanout, namespace = livelog.wakeups(), app.config["RQ_QUEUE"]
    job_id, other = _unique_job_id(), _unique_job_id() + 1
    probe = fanout.register(job_id, namespace)
    fanout.unregister(job_id, namespace, probe)
    assert fanout.subscribed.wait(10), "the process's subscription did not start"
    news = threading.Event()
    results = []

    def waiter():
        with app.app_context():
            results.append(livelog.wait_for_news(job_id, news.is_set, timeout=20))

    waiters = [threading.Thread(target=waiter) for _ in range(2)]
    bystander = fanout.register(other, namespace)
    # The same job id in another install sharing this Redis (its own RQ_QUEUE).
    neighbour = fanout.register(job_id, "another-install")
    for thread in waiters:
        thread.start()
    threading.Event().wait(0.3)
    news.set()
    livelog.announce_chunk(redis_connection(), job_id)
    for thread in waiters:
        thread.join(timeout=15)
    assert results == [True, True]
    assert not bystander.is_set() and not neighbour.is_set()
    fanout.unregister(other, namespace, bystander)
    fanout.unregister(job_id, "another-install", neighbour)
    for channel in (livelog._channel(job_id, namespace), livelog._channel(other, namespace),
                    livelog._channel(job_id, "another-install")):
        assert channel not in fanout._waiting


def test_waits_still_end_by_looking_when_redis_cannot_be_reached(app, monkeypatch):
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(livelog, "RECHECK_SECONDS", 0.05)
    looks = []

    def has_news():
        looks.append(1)
        return len(looks) >= 3

    assert livelog.wait_for_news(_unique_job_id(), has_news, timeout=10)
    assert not livelog.wakeups().subscribed.is_set()


def test_channels_and_watched_keys_name_the_install_and_the_job(app):
    queue = app.config["RQ_QUEUE"]
    assert livelog._channel(42, queue) == f"imagebuilder:log:{queue}:42"
    assert livelog._watch_key(42, queue) == f"imagebuilder:log-watched:{queue}:42"
    livelog.mark_watched(42)
    redis = redis_connection()
    try:
        assert livelog.Watched(redis, 42)()
        assert not livelog.Watched(redis, 42, namespace="another-install")()
    finally:
        redis.delete(livelog._watch_key(42, queue))




class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_the_answer_pace_gives_each_request_the_next_free_moment_in_arrival_order():
    clock = FakeClock()
    pace = livelog.Pace(rate=10, burst=2, clock=clock, sleep=clock.sleep)
    # After a quiet spell a burst of two goes at once; then one every 100 ms, in order.
    assert [pace.take(timeout=5) for _ in range(4)] == [True] * 4
    assert clock.slept == [0.1, 0.1]
    # A request whose moment is further away than its timeout takes none and is refused.
    assert pace.take(timeout=0.05) is False
    assert pace.take(timeout=1) is True and clock.slept[-1] == 0.1
    clock.now += 10  # quiet again: the burst is back, and no more than the burst
    assert [pace.take(timeout=5) for _ in range(3)] == [True] * 3
    assert clock.slept[-1] == 0.1 and len(clock.slept) == 4


def test_a_moment_given_back_lets_the_next_request_go_sooner():
    clock = FakeClock()
    pace = livelog.Pace(rate=10, burst=1, clock=clock, sleep=clock.sleep)
    assert pace.take(timeout=5)
    pace.give_back()  # that look found nothing new: it rendered nothing
    assert pace.take(timeout=5) and clock.slept == []


def test_an_answer_rate_of_0_means_no_pace(app):
    with app.test_request_context():
        app.config["LOG_ANSWER_RATE"] = 0
        assert livelog.pace() is None
        app.config["LOG_ANSWER_RATE"] = 30
        assert livelog.pace() is livelog.pace() and livelog.pace().rate == 30
