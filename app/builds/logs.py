"""Build logs, stored as numbered chunks so readers can ask for what is new."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from ..extensions import db
from ..models import BuildJob, LogChunk

# CSI sequences (colours, cursor moves) and OSC sequences (titles, links).
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


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
