"""Job pages: a job's status and snapshot, and its log, fetched chunk by chunk while it runs."""
import zlib

from flask import abort, flash, redirect, render_template, request, url_for

from ..extensions import db
from ..models import BuildJob
from ..ui import local_target
from . import bp
from .control import cancel_job
from .logs import read_log, strip_ansi

# A poller that just got text asks again at once (catching up on a long log), then every second.
ACTIVE_TRIGGER = "load, every 1s"
CATCH_UP_TRIGGER = "load"


def _job_or_404(job_id: int) -> BuildJob:
    return db.session.get(BuildJob, job_id) or abort(404)


def status_key(job: BuildJob) -> str:
    """A short fingerprint of what the status block shows, so an idle poll can say 'nothing new'."""
    shown = "|".join(
        str(v) for v in (job.status, job.progress, job.image, job.digest, job.error, job.started_at, job.cancel_requested)
    )
    return format(zlib.crc32(shown.encode("utf-8")), "08x")


@bp.route("/jobs/<int:job_id>")
def job(job_id):
    job = _job_or_404(job_id)
    return render_template("builds/job.html", job=job, state=status_key(job))


@bp.route("/jobs/<int:job_id>/cancel", methods=["POST"])
def cancel(job_id):
    job = _job_or_404(job_id)
    if cancel_job(job):
        flash(f"Cancelling {job.spec.name} r{job.revision}.", "info")
    else:
        flash(f"{job.spec.name} r{job.revision} had already finished.", "info")
    # The list and the Jobs tab send their own page back as "next".
    return redirect(local_target(request.form.get("next"), url_for("builds.job", job_id=job.id)))


@bp.route("/jobs/<int:job_id>/row")
def job_row(job_id):
    return render_template("builds/_job_row.html", job=_job_or_404(job_id))


@bp.route("/jobs/<int:job_id>/log")
def job_log(job_id):
    """New log text after chunk ``offset``.

    204 with no body when there is nothing new (htmx keeps polling and swaps nothing).
    Otherwise the escaped text to append, a new poller carrying the next offset, and the
    status block. The status is read before the log: a job that had finished by then had
    written all its log, so an empty read of a finished job means the log is complete and
    the poller comes back without a trigger.
    """
    job = _job_or_404(job_id)
    finished = not job.is_active
    offset = request.args.get("offset", 0, type=int)
    text, next_offset = read_log(job.id, max(offset, 0))
    state = status_key(job)
    if not text and not finished and request.args.get("state") == state:
        return "", 204
    if text:
        trigger = CATCH_UP_TRIGGER if finished else ACTIVE_TRIGGER
    else:
        trigger = None if finished else "every 1s"
    return render_template(
        "builds/_log_update.html",
        job=job,
        text=strip_ansi(text),
        offset=next_offset,
        state=state,
        trigger=trigger,
    )
