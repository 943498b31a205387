"""The log's rendering (app/builds/logview.py): ANSI colours to styled spans, carriage
returns as a terminal shows them, numbered lines in steps; hostile output stays text."""
import re
import time

import pytest

from app.builds.logview import LogPosition, error_line, render_log, strip_ansi, terminal_line


def html_of(raw: str) -> str:
    """The inner HTML of one rendered line."""
    body, _ = render_log([(raw + "\n", None)], LogPosition(line=0, step=1))
    return body.split('<span class="lt">', 1)[1].rsplit("</span></div>", 1)[0]


@pytest.mark.parametrize("raw, expected", [
    ("plain text", "plain text"),
    ("\x1b[31mred\x1b[0m plain", '<span class="ansi-fg1">red</span> plain'),
    ("\x1b[1;32mbold green\x1b[m", '<span class="ansi-fg2 ansi-bold">bold green</span>'),
    ("\x1b[91mbright\x1b[39m", '<span class="ansi-fg9">bright</span>'),
    ("\x1b[44;97mon blue\x1b[49m!", '<span class="ansi-fg15 ansi-bg4">on blue</span><span class="ansi-fg15">!</span>'),
    ("\x1b[38;5;3mpalette\x1b[0m", '<span class="ansi-fg3">palette</span>'),
    ("\x1b[38;5;200mbeyond 16\x1b[0m", "beyond 16"),  # 256-colour codes: no class, text kept
    ("\x1b[38;2;1;2;3mrgb\x1b[0m", "rgb"),
    ("\x1b[4munder\x1b[24m \x1b[3mit\x1b[23m", '<span class="ansi-underline">under</span> <span class="ansi-italic">it</span>'),
    ("\x1b]0;window title\x07after", "after"),  # OSC: dropped
    ("\x1b[2Jcleared", "cleared"),  # other CSI: dropped
    # Hostile input stays text.
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ('\x1b[31m"><img src=x onerror=alert(1)>', '<span class="ansi-fg1">&#34;&gt;&lt;img src=x onerror=alert(1)&gt;</span>'),
    ("unterminated \x1b[31", "unterminated [31"),
    ("lone escape \x1b", "lone escape "),
    ("osc \x1b]8;;http://x never ends", "osc 8;;http://x never ends"),  # ESC ] alone: a two-byte escape
    ("nul\x00 bell\x07 del\x7f", "nul bell del"),
])
def test_ansi_codes_become_styled_spans(raw, expected):
    assert html_of(raw) == expected


@pytest.mark.parametrize("raw, shown", [
    ("  0%\r 50%\r100%", "100%"),
    ("Reading package lists... 0%\rReading package lists... Done", "Reading package lists... Done"),
    ("abcdef\rXY", "XYcdef"),  # a shorter rewrite leaves the rest, as a terminal does
    ("abcdef\rXY\x1b[K", "XY"),  # ... unless the line is erased after the cursor
    ("abcdef\x1b[2Kxy", "      xy"),  # erased whole; the cursor stays where it was
    ("progress\r", "progress"),  # a last redraw that ends in \r keeps what it showed
    ("ab\x1b[5Gx", "ab  x"),  # cursor to column 5
    ("abc\x1b[2Dx", "axc"),
    ("\x1b[32m 10%\r\x1b[32m100%\x1b[0m done", "100% done"),
])
def test_carriage_returns_show_what_a_terminal_shows(raw, shown):
    assert "".join(text for _style, text in terminal_line(raw)) == shown


def test_a_rewritten_progress_line_is_one_line():
    bar = "".join(f"\r{n:3d}%|{'#' * (n // 10):<10}|" for n in range(101)) + "\n"
    body, at = render_log([("Downloading six\n" + bar + "Installed\n", None)])
    assert at.line == 3 and body.count('class="line"') == 3
    assert "100%|##########|" in body and " 99%" not in body


def test_colours_do_not_leak_into_the_next_line():
    body, _ = render_log([("\x1b[31mred without reset\nnext\n", None)])
    assert '<span class="lt">next</span>' in body


def test_a_ten_megabyte_line_renders_whole():
    line = "x" * (10 * 1024 * 1024)
    body, at = render_log([(line + "\n", None)])
    assert at.line == 1 and line in body


def test_a_long_line_of_escapes_and_redraws_ends_as_its_last_redraw():
    line = ("\x1b[31m<b>\x1b[0m\r" * 200_000) + "en"
    runs = terminal_line(line)
    assert "".join(text for _s, text in runs) == "en>"
    assert strip_ansi("\x1b[31m<b>\x1b[0m") == "<b>"


@pytest.mark.parametrize("lines, titles", [
    (["==> [1/5] Pulling base image x", "pulled", "==> [2/5] Pre-flight checks"],
     ["[1/5] Pulling base image x", "[2/5] Pre-flight checks"]),
    # N may change (another helper adds a verify step): any [n/N] is a step.
    (["==> [5/6] Verifying the image", "==> [6/6] Confirming"], ["[5/6] Verifying the image", "[6/6] Confirming"]),
    (["==> [3/5] Building", "STEP 1/2: FROM debian", "STEP 2/2: RUN apt-get install -y jq", "E: oops"],
     ["[3/5] Building", "STEP 1/2: FROM debian", "STEP 2/2: RUN apt-get install -y jq"]),
    (["before any step", "==> [1/5] Pulling"], ["Output", "[1/5] Pulling"]),
    (["  ==> [1/5] indented is not a step", "[1/5] nor without the arrow"], ["Output"]),
])
def test_steps_begin_at_the_runners_markers_and_podmans_steps(lines, titles):
    body, at = render_log([("\n".join(lines) + "\n", 10.0)])
    assert re.findall(r'<span class="step-title">(.*?)</span>', body) == titles
    assert at == LogPosition(line=len(lines), step=len(titles))
    assert body.count("<details") == body.count("</details>") == len(titles)


def test_a_poll_continues_the_current_step_then_opens_new_ones():
    first, at = render_log([("==> [1/5] Pulling\n", 1.0)], open_last=True)
    assert " open><summary>" in first
    more, after = render_log([("still pulling\n==> [2/5] Pre-flight checks\nok\n", 2.5)], at, open_last=True)
    assert more.startswith('<div class="line" id="L2">')  # goes into step 1
    assert '<details class="log-step" id="step-2" data-started="2.500" open>' in more
    assert after == LogPosition(line=4, step=2)
    finished, _ = render_log([("==> [3/5] Building\n", 3.0)], after, open_last=False)
    assert " open" not in finished


def test_podman_steps_are_marked_as_steps_of_the_build():
    body, _ = render_log([("STEP 1/1: FROM x\n", None)], LogPosition(line=3, step=2))
    assert '<details class="log-substep' in body.replace("log-step log-substep", "log-substep") and 'id="step-3"' in body


ERROR = "The build failed: E: Unable to locate package nosuch (Podman: error building at STEP 2/2: exit status 100)"


@pytest.mark.parametrize("text, error, expected", [
    # The package manager's line the summary leads with, not Podman's own error after it.
    ("==> [3/5] Building\nE: Unable to locate package nosuch\nerror building at STEP 2/2: exit status 100\n", ERROR, 2),
    ("E: Unable to locate package nosuch\nmore\nE: Unable to locate package nosuch\n", ERROR, 3),  # the last one
    ("\x1b[31mERROR: No matching distribution found for nosuch\x1b[0m\n", "The build failed: something else", 1),
    ("all fine\n", "Pushing failed", None),
])
def test_error_line_is_the_one_the_summary_quotes(text, error, expected):
    assert error_line([text], error) == expected


def test_error_lines_are_marked_for_the_page():
    body, _ = render_log([("E: Unable to locate package x\nfine\n", None)])
    assert '<div class="line log-errline" id="L1">' in body and '<div class="line" id="L2">' in body
