"""The API's log download: a job's whole stored log as plain text."""
from ..builds.logs import log_text_response
from . import bp
from .payloads import query_bool
from .routes import _job_or_404


@bp.get("/jobs/<int:job_id>/log.txt")
def get_job_log_text(job_id):
    job = _job_or_404(job_id)
    return log_text_response(job, keep_ansi=query_bool("ansi", False))
