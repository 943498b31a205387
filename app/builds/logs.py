"""Build logs, stored as numbered chunks so readers can ask for what is new."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

from flask import Response, stream_with_context
from sqlalchemy import func, select

from ..extensions import db
from ..models import BuildJob, LogChunk
from .logview import strip_ansi

DOWNLOAD_BATCH = 500  # chunks read per query while a download streams


def append_log_chunk(job: BuildJob, text: str) -> None:
    """Add one chunk after the job's last; the caller commits."""
    if not text:
        return
    last = db.session.scalar(select(func.max(LogChunk.seq)).where(LogChunk.job_id == job.id))
    db.session.add(LogChunk(job_id=job.id, seq=(last if last is not None else -1) + 1, text=text))
    job.log_bytes = (job.log_bytes or 0) + len(text.encode("utf-8"))


def read_log(job_id: int, offset: int = 0, limit: int = 500) -> tuple[str, int]:
    """(text of chunks with seq >= offset, the offset to ask for next)."""
    chunks = db.session.execute(
        select(LogChunk.seq, LogChunk.text)
        .where(LogChunk.job_id == job_id, LogChunk.seq >= offset)
        .order_by(LogChunk.seq)
        .limit(limit)
    ).all()
    if not chunks:
        return "", offset
    return "".join(text for _seq, text in chunks), chunks[-1].seq + 1


def read_chunks(job_id: int, offset: int = 0, limit: int | None = 500) -> tuple[list[tuple[str, float]], int]:
    """([(text, time written as a Unix time)] of chunks with seq >= offset, the offset to ask for next)."""
    query = (select(LogChunk.seq, LogChunk.text, LogChunk.created_at)
             .where(LogChunk.job_id == job_id, LogChunk.seq >= offset).order_by(LogChunk.seq))
    rows = db.session.execute(query.limit(limit) if limit else query).all()
    if not rows:
        return [], offset
    return [(text, unix_time(created)) for _seq, text, created in rows], rows[-1].seq + 1


def unix_time(value: datetime) -> float:
    # The models store naive UTC datetimes.
    return value.replace(tzinfo=timezone.utc).timestamp()


def iter_log_text(job_id: int, keep_ansi: bool = False) -> Iterator[str]:
    offset = 0
    while True:
        text, offset_next = read_log(job_id, offset, DOWNLOAD_BATCH)
        if not text:
            return
        yield text if keep_ansi else strip_ansi(text)
        offset = offset_next


def log_text_response(job: BuildJob, keep_ansi: bool = False) -> Response:
    """The whole stored log as plain text, streamed; ANSI codes stripped unless kept."""
    filename = f"{job.spec.name}-r{job.revision}.log"
    return Response(stream_with_context(iter_log_text(job.id, keep_ansi)), mimetype="text/plain",
                    headers={"Content-Disposition": f'inline; filename="{filename}"',
                             "X-Content-Type-Options": "nosniff"})
