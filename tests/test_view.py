"""The terminal view, rendered without a terminal."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from model import drums
from performer.view import LABEL_W, View, render
from tests.live_fakes import simple_pattern


def status(**kw):
    mutes = np.zeros(9, bool)
    mutes[2] = True
    locks = np.ones(9, bool)
    locks[2] = False
    s = {
        "transport": "playing",
        "bpm": 123.4,
        "position": 384 + 6 * 21 + 2,  # cycle 1, step 21
        "cycle": 1,
        "step": 21,
        "pattern": simple_pattern({0: [0], 21: [1], 63: [8]}),
        "director": {"label": "groove seed 7", "temperature": 0.9, "density": 0.25, "morph": (2, 4),
                     "morph_cycles": 4, "mutes": mutes, "locks": locks, "pending": True},
        "out": "virtual 'Drum Performer'",
        "clock": "virtual 'Drum Performer Clock'",
        "mode": "groove, channel 10, seed 7",
        "help": False,
        "last_action": "new",
        "messages": ["WARNING: something"],
    }
    s.update(kw)
    return s


def test_grid_has_nine_voices_of_64_steps_and_the_header():
    lines = render(status())
    text = "\n".join(lines)
    assert "123.4 BPM" in lines[0] and "playing" in lines[0] and "cycle 2" in lines[0]  # the second cycle: bars 5-8
    assert "bar   6.2.2" in lines[0]  # song position: bar 6 (cycle 1 = bars 5-8), beat 2, 16th 2
    assert "groove seed 7" in lines[1] and "T 0.90" in lines[1] and "morph 2/4" in lines[1]
    assert "next cycle" in lines[1]
    assert "Drum Performer Clock" in lines[2]
    assert "style any" in lines[3]  # the status above has no style: "any"
    rows = [ln for ln in lines if ln[:1].isdigit() and ln[1:2] == " "]
    assert len(rows) == drums.NUM_VOICES
    for v, row in enumerate(rows):
        grid = row[LABEL_W:]
        assert len(grid.replace("|", "")) == drums.STEPS and grid.count("|") == drums.BARS - 1
        assert row.startswith(f"{v + 1} {drums.VOICE_LABELS[v]}")
    assert rows[2][5] == "M" and rows[0][6] == "L" and rows[2][6] == " "
    assert rows[0][LABEL_W] == "X" and rows[1][LABEL_W + 21 + 1] == "X" and rows[8].endswith("X")
    assert "WARNING: something" in text and "last: new" in text


def test_playhead_marker_sits_under_the_step():
    lines = render(status())
    marker = next(ln for ln in lines if ln.strip() == "^")
    rows = [ln for ln in lines if ln[:2] == "2 "]
    col = marker.index("^")
    assert rows[0][col] == "X"  # the snare on step 21 is under the playhead


def test_stopped_shows_no_playhead_and_help_toggles():
    lines = render(status(transport="stopped", help=True))
    assert not any(ln.strip() == "^" for ln in lines)
    assert any("new groove" in ln for ln in lines)


def test_lines_are_clipped_to_the_terminal():
    assert all(len(ln) <= 40 for ln in render(status(), width=40))


def test_render_copes_with_an_empty_snapshot():
    lines = render({})
    assert lines[0].startswith("drum-performer")


class FakeTerm:
    width, height = 100, 30

    def move_xy(self, x, y):
        return f"<{x},{y}>"

    clear_eol = "<eol>"


def test_view_redraws_only_changed_lines():
    s = status()
    out = io.StringIO()
    v = View(FakeTerm(), lambda: s, out=out)
    v.frame()
    first = out.getvalue()
    assert first.count("<eol>") >= 15
    out.truncate(0)
    out.seek(0)
    v.frame()
    assert out.getvalue() == ""  # nothing changed, nothing written
    s["last_action"] = "variation"
    v.frame()
    assert out.getvalue().count("<eol>") == 1


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs a Linux pty")
def test_interactive_session_on_a_terminal():
    """Keys on a real pty reach the controls, the view draws, q quits cleanly."""
    import pty
    import select

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, TERM="xterm-256color", LINES="30", COLUMNS="100", BLESSED_QUERY_TIMEOUT_SECONDS="0.2")
    pid, fd = pty.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.chdir(root)
            os.execvpe(sys.executable, [sys.executable, "-c",
                       "from tests.live_fakes import tty_child_main; tty_child_main()"], env)
        finally:
            os._exit(127)
    out = b""

    def pump(seconds):
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    return False
        return True

    try:
        pump(3.0)
        for k in "2n":
            os.write(fd, k.encode())
            pump(0.3)
        os.write(fd, b"q")
        deadline = time.monotonic() + 10
        while pump(0.1) and time.monotonic() < deadline:
            pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert "drum-performer" in text and "BPM" in text and "2 SD" in text
    assert "mutes .M....... pending True" in text
    assert os.waitstatus_to_exitcode(status) in (0, -signal.SIGKILL)
