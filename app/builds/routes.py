"""Job pages: a job's status and snapshot, and its log: rendered in the page, then followed
live by a long poll while the job runs (app/builds/livelog.py), and downloadable as text."""
import zlib

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import BuildJob, JobStatus
from ..params import query_int
from ..ui import local_target
from . import bp, livelog
from .control import cancel_job
from .logs import log_text_response, read_chunks
from .logview import LogPosition, error_line, render_log

# How long a log request may sleep for its answer moment (LOG_ANSWER_RATE) and then for an
# answer turn before it gives up (then it is answered 204, or waits on): a request holding
# a waiting slot, and one that holds none (a plain poll, or a viewer past LOG_WAIT_SLOTS),
# so the requests that sleep without a slot never hold many threads for long.
ANSWER_PATIENCE_SECONDS = 5.0
PLAIN_PATIENCE_SECONDS = 0.5


def _job_or_404(job_id: int) -> BuildJob:
    return db.session.get(BuildJob, job_id) or abort(404)


def _looked_up_job(job_id: int) -> BuildJob:
    """The job and its spec, both read afresh in one query: a look's commit has expired
    them, and one query per look instead of two counts at 50 viewers' request rates."""
    query = (select(BuildJob).options(joinedload(BuildJob.spec)).where(BuildJob.id == job_id)
             .execution_options(populate_existing=True))
    return db.session.execute(query).scalar_one_or_none() or abort(404)


def status_key(job: BuildJob) -> str:
    """A short fingerprint of what the status block shows, so an idle poll can say 'nothing new'."""
    shown = "|".join(
        str(v) for v in (job.status, job.progress, job.image, job.digest, job.error, job.started_at, job.cancel_requested,
                         job.revision == job.spec.active_revision)
    )
    return format(zlib.crc32(shown.encode("utf-8")), "08x")


def _cursor_arg(name: str) -> int:
    return query_int(name, 0, minimum=0)


def _failed_line(job: BuildJob) -> int | None:
    """The line a failed job's page opens at (read once, when the job has ended)."""
    if job.status != JobStatus.FAILED:
        return None
    chunks, _offset = read_chunks(job.id, 0, limit=None)
    return error_line((text for text, _written in chunks), job.error)


@bp.route("/jobs/<int:job_id>")
def job(job_id):
    job = _job_or_404(job_id)
    if job.log_may_grow:
        livelog.mark_watched(job.id)  # the worker writes sooner from now on
    state = status_key(job)  # read before the log, as the poll does
    chunks, offset = read_chunks(job.id, 0, limit=None)
    log_html, position = render_log(chunks, open_last=job.log_may_grow)
    error_at = None
    if job.status == JobStatus.FAILED:
        error_at = error_line((text for text, _written in chunks), job.error)
    return render_template("builds/job.html", job=job, state=state, log_html=log_html, offset=offset,
                           position=position, trigger=job.log_may_grow, error_at=error_at)


@bp.route("/jobs/<int:job_id>/cancel", methods=["POST"])
def cancel(job_id):
    job = _job_or_404(job_id)
    if cancel_job(job):
        flash(_("Cancelling %(name)s r%(revision)d.", name=job.spec.name, revision=job.revision), "info")
    else:
        flash(_("%(name)s r%(revision)d had already finished.", name=job.spec.name, revision=job.revision), "info")
    # The list and the Jobs tab send their own page back as "next".
    return redirect(local_target(request.form.get("next"), url_for("builds.job", job_id=job.id)))


@bp.route("/jobs/<int:job_id>/row")
def job_row(job_id):
    return render_template("builds/_job_row.html", job=_job_or_404(job_id))


def _nothing_new(retry_after: int | None = None):
    """204: nothing to swap. Retry-After tells the job page when to ask again."""
    return "", 204, ({"Retry-After": str(retry_after)} if retry_after is not None else {})


def _answer(job_id: int, offset: int, state: str | None, line: int, step: int, patience: float) -> str | None:
    """The log update after the cursor, or None while there is nothing new (or no answer
    moment or turn came within ``patience`` seconds). Looks and renders in one of the
    process's answer turns (livelog.answer_turn), in a transaction of its own that has
    ended when it returns: a request sleeping for a turn or for news holds no pooled
    connection.

    The status is read before the log: a job that had finished by then had written all its
    log, so an empty read of a finished job means the log is complete and the poller comes
    back without a trigger."""
    db.session.commit()
    paced = livelog.pace()
    if paced is not None and not paced.take(patience):
        return None
    with livelog.answer_turn(patience) as turn:
        if not turn:
            return None
        try:
            job = _looked_up_job(job_id)
            finished = not job.log_may_grow
            chunks, next_offset = read_chunks(job.id, offset)
            new_state = status_key(job)
            if not chunks and not finished and state == new_state:
                if paced is not None:
                    paced.give_back()
                return None
            log_html, position = render_log(chunks, LogPosition(line=line, step=step), open_last=not finished)
            done = finished and not chunks
            return render_template(
                "builds/_log_update.html",
                job=job,
                log_html=log_html,
                offset=next_offset,
                position=position,
                state=new_state,
                trigger=not done,
                error_at=_failed_line(job) if done else None,
            )
        finally:
            db.session.commit()


@bp.route("/jobs/<int:job_id>/log")
def job_log(job_id):
    """The log's lines after chunk ``offset``, rendered to continue the page's log (which
    shows ``line`` lines in ``step`` steps): the lines to add, a new poller carrying the
    next cursor, and the status block; 204 with no body when there is nothing new.

    With ``wait=1`` (the job page) a request for a running job is held until there is
    something new, up to LOG_WAIT_SECONDS, then answered 204 (ask again at once); when every
    waiting slot of the process is taken it is answered at once: with what is new, or 204
    with Retry-After (ask again later). Only a request holding a slot sleeps for long.
    """
    job = _job_or_404(job_id)
    offset, line, step = _cursor_arg("offset"), _cursor_arg("line"), _cursor_arg("step")
    state = request.args.get("state")
    if request.args.get("wait") != "1" or not job.log_may_grow:
        answer = _answer(job.id, offset, state, line, step, PLAIN_PATIENCE_SECONDS)
        return answer if answer is not None else _nothing_new()
    livelog.mark_watched(job.id)
    with livelog.wait_slot() as admitted:
        if not admitted:  # answered now if there is news, else polled plainly
            answer = _answer(job.id, offset, state, line, step, PLAIN_PATIENCE_SECONDS)
            return answer if answer is not None else _nothing_new(livelog.OVERFLOW_RETRY_SECONDS)
        answer = livelog.wait_for_news(
            job_id, lambda: _answer(job_id, offset, state, line, step, ANSWER_PATIENCE_SECONDS),
            float(current_app.config["LOG_WAIT_SECONDS"]))
    return answer if answer is not None else _nothing_new(0)


@bp.route("/jobs/<int:job_id>/log.txt")
def job_log_text(job_id):
    """The whole stored log as plain text (ANSI codes stripped; ``?ansi=1`` keeps them)."""
    job = _job_or_404(job_id)
    return log_text_response(job, keep_ansi=request.args.get("ansi") in ("1", "true", "yes"))
