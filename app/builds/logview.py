"""How a build log reads on the job page: pure functions from stored text to HTML.

- ANSI SGR colours and styles become ``<span class="ansi-...">`` (classes, never inline
  styles: the page's Content-Security-Policy forbids them); every other escape sequence is
  dropped. Carriage returns, "erase line" and cursor moves within a line are applied as a
  terminal applies them, so an apt or pip progress bar that rewrote itself a hundred times
  is one line showing its last state.
- Every piece of output text is escaped here: build output is untrusted, and the Markup
  these functions return holds only markup made in this module.
- Lines are numbered (``id="L120"``, a link to share) and grouped into the build's steps:
  the worker's ``==> [n/N] text`` markers (``BuildRun.announce``) and Podman's
  ``STEP n/m: ...`` lines each begin a foldable ``<details>`` section.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from markupsafe import Markup, escape

# CSI sequences (colours, cursor moves), OSC sequences (titles, links), other two-byte
# escapes, a lone ESC (an unterminated sequence), a carriage return, other C0 controls.
_TOKEN_RE = re.compile(
    r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\x1b|(\r)|[\x00-\x08\x0b-\x1f\x7f]"
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_STRIP_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_RUNNER_STEP_RE = re.compile(r"^==> \[(\d+)/(\d+)\] (.+)$")
_PODMAN_STEP_RE = re.compile(r"^STEP (\d+)/(\d+): (.+)$")
# A package manager's error line, as the runner recognises it for the job's error summary.
_ERROR_LINE_RE = re.compile(r"^(?:E|ERROR|error|Error|CRITICAL|critical)(?::| ).*$")

_COLOURS = 16  # the 8 standard and 8 bright colours; 256-colour and RGB codes are ignored


def strip_ansi(text: str) -> str:
    return _STRIP_RE.sub("", text)


# -- one line as a terminal shows it ----------------------------------------------------------


@dataclass(frozen=True)
class Style:
    fg: int | None = None
    bg: int | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    def classes(self) -> str:
        names = []
        if self.fg is not None:
            names.append(f"ansi-fg{self.fg}")
        if self.bg is not None:
            names.append(f"ansi-bg{self.bg}")
        names += [f"ansi-{flag}" for flag in ("bold", "dim", "italic", "underline") if getattr(self, flag)]
        return " ".join(names)


PLAIN = Style()


def apply_sgr(style: Style, params: str) -> Style:
    """The style after one ``ESC [ params m``."""
    codes = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else [0]
    fields = dict(fg=style.fg, bg=style.bg, bold=style.bold, dim=style.dim, italic=style.italic,
                  underline=style.underline)
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            fields = dict(fg=None, bg=None, bold=False, dim=False, italic=False, underline=False)
        elif code in (1, 2, 3, 4):
            fields[("bold", "dim", "italic", "underline")[code - 1]] = True
        elif code == 22:
            fields.update(bold=False, dim=False)
        elif code == 23:
            fields["italic"] = False
        elif code == 24:
            fields["underline"] = False
        elif 30 <= code <= 37 or 90 <= code <= 97:
            fields["fg"] = code - 30 if code < 90 else code - 82
        elif 40 <= code <= 47 or 100 <= code <= 107:
            fields["bg"] = code - 40 if code < 100 else code - 92
        elif code == 39:
            fields["fg"] = None
        elif code == 49:
            fields["bg"] = None
        elif code in (38, 48):
            kind = codes[i + 1] if i + 1 < len(codes) else None
            if kind == 5 and i + 2 < len(codes):
                colour = codes[i + 2]
                if colour < _COLOURS:
                    fields["fg" if code == 38 else "bg"] = colour
                i += 2
            elif kind == 2:
                i += 4
        i += 1
    return Style(**fields)


class _Line:
    """A terminal line: runs of (style, text), and a cursor that may sit inside them."""

    def __init__(self):
        self.runs: list[tuple[Style, str]] = []
        self.length = 0
        self.cursor = 0

    def write(self, style: Style, text: str) -> None:
        if not text:
            return
        if self.cursor > self.length:
            self._append(PLAIN, " " * (self.cursor - self.length))
        if self.cursor == self.length:
            self._append(style, text)
        else:
            end = self.cursor + len(text)
            self.runs = self._cut(0, self.cursor) + [(style, text)] + self._cut(end, max(self.length, end))
            self.length = max(self.length, end)
            self.runs = _merged(self.runs)
        self.cursor += len(text)

    def erase(self, mode: int) -> None:
        """ESC [ K: 0 from the cursor to the end, 1 from the start to the cursor, 2 all."""
        if mode == 0:
            self.runs, self.length = self._cut(0, min(self.cursor, self.length)), min(self.cursor, self.length)
        elif mode == 1:
            upto = min(self.cursor, self.length)
            self.runs = _merged([(PLAIN, " " * upto)] + self._cut(upto, self.length))
        elif mode == 2:
            self.runs, self.length = [], 0

    def _append(self, style: Style, text: str) -> None:
        if self.runs and self.runs[-1][0] == style:
            self.runs[-1] = (style, self.runs[-1][1] + text)
        else:
            self.runs.append((style, text))
        self.length += len(text)

    def _cut(self, start: int, end: int) -> list[tuple[Style, str]]:
        """The runs covering columns [start, end)."""
        out, pos = [], 0
        for style, text in self.runs:
            a, b = max(start, pos), min(end, pos + len(text))
            if a < b:
                out.append((style, text[a - pos:b - pos]))
            pos += len(text)
            if pos >= end:
                break
        return out


def _merged(runs):
    out: list[tuple[Style, str]] = []
    for style, text in runs:
        if out and out[-1][0] == style:
            out[-1] = (style, out[-1][1] + text)
        elif text:
            out.append((style, text))
    return out


def terminal_line(raw: str) -> list[tuple[Style, str]]:
    """One stored line (no newline) as a terminal would show it, as (style, text) runs.
    Each line starts plain, so a line reads the same in the live view and the finished one."""
    if not _CONTROL_RE.search(raw):
        return [(PLAIN, raw)] if raw else []
    if not _CONTROL_RE.search(raw.replace("\r", "")):  # carriage returns only: the quick way
        return _overlaid(raw.split("\r"))
    line, style = _Line(), PLAIN
    pos = 0
    for match in _TOKEN_RE.finditer(raw):
        line.write(style, raw[pos:match.start()])
        pos = match.end()
        params, final, carriage_return = match.groups()
        if carriage_return:
            line.cursor = 0
        elif final == "m":
            style = apply_sgr(style, params)
        elif final == "K":
            line.erase(int(params) if params.isdigit() else 0)
        elif final == "G":
            line.cursor = max(int(params) if params.isdigit() else 1, 1) - 1
        elif final == "C":
            line.cursor += max(int(params) if params.isdigit() else 1, 1)
        elif final == "D":
            line.cursor = max(line.cursor - max(int(params) if params.isdigit() else 1, 1), 0)
    line.write(style, raw[pos:])
    # A line that ended with "\r" (a progress bar's last redraw) keeps what it showed.
    return line.runs


def _overlaid(segments: list[str]) -> list[tuple[Style, str]]:
    """Plain text rewritten after carriage returns: each segment overwrites the start of
    what is shown (read from the last, so a 10,000-redraw progress bar costs little)."""
    shown = segments[-1]
    for segment in reversed(segments[:-1]):
        if len(segment) > len(shown):
            shown += segment[len(shown):]
    return [(PLAIN, shown)] if shown else []


def runs_html(runs: Iterable[tuple[Style, str]]) -> Markup:
    parts = []
    for style, text in runs:
        classes = style.classes()
        parts.append(f'<span class="{classes}">{escape(text)}</span>' if classes else str(escape(text)))
    return Markup("".join(parts))


def plain_text(runs: Iterable[tuple[Style, str]]) -> str:
    return "".join(text for _style, text in runs)


# -- the log: numbered lines in steps ---------------------------------------------------------


@dataclass(frozen=True)
class LogPosition:
    """Where a rendered log ends: lines shown and steps begun."""

    line: int = 0
    step: int = 0


def step_title(plain: str) -> tuple[str, bool] | None:
    """(title, is a Podman STEP inside the build) when this line begins a step."""
    match = _RUNNER_STEP_RE.match(plain)
    if match:
        return f"[{match.group(1)}/{match.group(2)}] {match.group(3)}", False
    match = _PODMAN_STEP_RE.match(plain)
    if match:
        return plain, True
    return None


def _section_open(number: int, title: str, sub: bool, started: float | None, is_open: bool) -> str:
    classes = "log-step log-substep" if sub else "log-step"
    started_attr = f' data-started="{started:.3f}"' if started is not None else ""
    return (f'<details class="{classes}" id="step-{number}"{started_attr}{" open" if is_open else ""}>'
            f'<summary><span class="step-title">{escape(title)}</span>'
            f'<span class="step-time"></span></summary><div class="step-lines">')


def render_log(chunks: Iterable[tuple[str, float | None]], at: LogPosition = LogPosition(),
               open_last: bool = False) -> tuple[Markup, LogPosition]:
    """HTML for the lines of `chunks` ((text, time written) pairs, in order), continuing a
    log rendered up to `at`; and the position after them.

    Lines that continue the step in progress come first, bare; each line that begins a step
    opens a ``<details>`` section (with the time its chunk was written, for the step's
    duration) holding the lines up to the next step. Output before any step marker gets a
    section of its own. `open_last` leaves the last new section open (a running build's
    current step)."""
    line_no, step = at.line, at.step
    out: list[str] = []
    in_new_section = False
    pending_open: int | None = None  # index in `out` of the last section's opening tag
    for text, written in chunks:
        for raw in _lines(text):
            runs = terminal_line(raw)
            plain = plain_text(runs)
            title = step_title(plain)
            if title is None and step == 0:
                title = ("Output", False)
            if title is not None:
                if in_new_section:
                    out.append("</div></details>")
                step += 1
                pending_open = len(out)
                out.append(_section_open(step, title[0], title[1], written, False))
                in_new_section = True
            line_no += 1
            error = " log-errline" if _ERROR_LINE_RE.match(plain) else ""
            out.append(f'<div class="line{error}" id="L{line_no}"><a class="ln" href="#L{line_no}">{line_no}</a>'
                       f'<span class="lt">{runs_html(runs)}</span></div>')
    if in_new_section:
        out.append("</div></details>")
        if open_last and pending_open is not None:
            out[pending_open] = out[pending_open].replace("><summary>", " open><summary>", 1)
    return Markup("".join(out)), LogPosition(line=line_no, step=step)


def _lines(text: str) -> list[str]:
    """A chunk's lines; chunks end at line ends, except a single line too long to hold."""
    return text.removesuffix("\n").split("\n") if text else []


def error_line(chunks: Iterable[str], error: str | None) -> int | None:
    """The number of the line a failed job's error summary quotes (the package manager's
    error, which the summary leads with), else the log's last error line."""
    best: tuple[int, int] | None = None  # (where the summary quotes it, -line number)
    last = None
    number = 0
    for raw in (raw for text in chunks for raw in _lines(text)):
        number += 1
        plain = plain_text(terminal_line(raw)).strip()
        if not _ERROR_LINE_RE.match(plain):
            continue
        last = number
        where = error.find(plain) if error and plain else -1
        if where >= 0 and (best is None or (where, -number) < best):
            best = (where, -number)
    return -best[1] if best else last
