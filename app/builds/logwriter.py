"""The build log as the worker writes it: batched, redacted, capped.

Output is held until LOG_FLUSH_SECONDS have passed (LOG_LIVE_FLUSH_SECONDS while someone
reads the log live: `watched`) or 64 KiB are waiting, then written as one chunk (never one
database write per line). Only whole lines are written while the
build runs, so a secret is never split across two chunks and slips past redaction.
Past LOG_MAX_BYTES the log keeps its head as written, says once that output is held back,
keeps the newest output in a ring buffer, and at the end writes one truncation line and
that tail.
"""
from __future__ import annotations

import logging
import re
import time
from collections import deque
from typing import Callable

from ..i18n import stored as said

log = logging.getLogger(__name__)

REDACTED = "*****"
FLUSH_BYTES = 64 * 1024
_STEP_RE = re.compile(r"^STEP (\d+)/(\d+)\b", re.MULTILINE)
_MIN_SECRET_LENGTH = 4  # shorter "secrets" would blank out ordinary words

# store(text, progress, truncated) writes one chunk (text may be ""), the job's progress
# (None: unchanged) and whether the log is truncated, in one transaction.
Store = Callable[[str, "str | None", bool], None]


class LogWriter:
    def __init__(self, store: Store, *, max_bytes: int, flush_seconds: float = 0.5,
                 flush_bytes: int = FLUSH_BYTES, secrets=(), clock=time.monotonic,
                 watched: Callable[[], bool] | None = None, live_flush_seconds: float = 0.05):
        self._store = store
        self._flush_seconds = flush_seconds
        self._watched = watched
        self._live_flush_seconds = live_flush_seconds
        self._flush_bytes = flush_bytes
        self._clock = clock
        self._secrets: list[str] = []
        for secret in secrets:
            self.add_secret(secret)

        self.max_bytes = max_bytes
        # Past the cap, the newest quarter of the budget is kept for the end.
        self._tail_budget = max(max_bytes // 4, 1)
        self._head_budget = max(max_bytes - self._tail_budget, 0)

        self._pending = ""  # raw text not yet written
        self._unsent = ""  # redacted text a failed store still owes
        self._progress: str | None = None
        self._progress_dirty = False
        self._last_flush = clock()

        self.written_bytes = 0  # bytes of log text stored
        self.truncated = False
        self._tail: deque[str] = deque()
        self._tail_bytes = 0
        self.omitted_bytes = 0

    # -- input ------------------------------------------------------------------------

    def add_secret(self, secret: str | None) -> None:
        if secret and len(secret) >= _MIN_SECRET_LENGTH and secret not in self._secrets:
            self._secrets.append(secret)
            # Longest first, so a secret containing another is replaced whole.
            self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def write(self, text: str) -> None:
        if not text:
            return
        self._pending += text
        self.tick()

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def step(self, text: str) -> None:
        """A line announcing one of the worker's own steps (``==> Pushing ...``)."""
        self.line(f"==> {text}")

    def set_progress(self, progress: str) -> None:
        if progress != self._progress:
            self._progress = progress
            self._progress_dirty = True

    @property
    def progress(self) -> str | None:
        return self._progress

    # -- output -----------------------------------------------------------------------

    def tick(self) -> None:
        """Flush when enough time has passed or enough text is waiting."""
        interval = self._live_flush_seconds if self._watched and self._watched() else self._flush_seconds
        due = self._clock() - self._last_flush >= interval
        if due or len(self._pending) >= self._flush_bytes:
            self.flush()

    def flush(self, final: bool = False) -> None:
        if final:
            text, self._pending = self._pending, ""
        else:
            cut = self._pending.rfind("\n") + 1
            if cut == 0 and len(self._pending) >= self._flush_bytes:
                cut = len(self._pending)  # one enormous line: write it anyway
            text, self._pending = self._pending[:cut], self._pending[cut:]
        if text:
            for match in _STEP_RE.finditer(text):
                self.set_progress(said.CONTAINERFILE_STEP % {"step": match.group(1), "steps": match.group(2)})
            self._unsent += self._cap(self.redact(text))
        if final and self.truncated:
            self._unsent += self._tail_text()
        self._last_flush = self._clock()
        if not self._unsent and not self._progress_dirty and not final:
            return
        try:
            self._store(self._unsent, self._progress if self._progress_dirty else None, self.truncated)
        except Exception:
            if final:
                raise
            # Kept for the next flush: a busy database loses no output.
            log.warning("could not store %d bytes of build log; will retry", len(self._unsent), exc_info=True)
            return
        self.written_bytes += len(self._unsent.encode("utf-8"))
        self._unsent = ""
        self._progress_dirty = False

    def close(self) -> None:
        self.flush(final=True)

    # -- the size cap -----------------------------------------------------------------

    def _cap(self, text: str) -> str:
        """What of `text` goes into the log now; the rest feeds the tail."""
        if self.truncated:
            self._keep_tail(text)
            return ""
        size = len(text.encode("utf-8"))
        room = self._head_budget - self.written_bytes - len(self._unsent.encode("utf-8"))
        if size <= room:
            return text
        head = _cut_at_line(text, max(room, 0))
        self.truncated = True
        self._keep_tail(text[len(head):])
        notice = (f"[log over {self.max_bytes} bytes: further output is held back; "
                  f"its last {self._tail_budget} bytes are shown when the build ends]\n")
        return head + notice

    def _keep_tail(self, text: str) -> None:
        for piece in text.splitlines(keepends=True):
            self._tail.append(piece)
            self._tail_bytes += len(piece.encode("utf-8"))
        while self._tail_bytes > self._tail_budget and self._tail:
            dropped = self._tail.popleft()
            size = len(dropped.encode("utf-8"))
            self._tail_bytes -= size
            self.omitted_bytes += size

    def _tail_text(self) -> str:
        tail = "".join(self._tail)
        self._tail.clear()
        notice = f"[log truncated: {self.omitted_bytes} bytes omitted; the last {self._tail_bytes} are kept below]\n"
        self._tail_bytes = 0
        return notice + tail


def _cut_at_line(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` that ends a line and fits in max_bytes."""
    prefix = text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
    cut = prefix.rfind("\n") + 1
    return prefix[:cut]
