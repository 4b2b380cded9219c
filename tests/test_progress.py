"""Progress in logs: a line every few seconds when stderr is not a terminal, the total labelled when estimated."""

from __future__ import annotations

import io

from e2escan.progress import LogProgress, progress_bar


def test_log_progress_prints_lines_with_an_exact_or_estimated_total():
    out = io.StringIO()
    bar = LogProgress(200, "replicate 1/1", "messages", estimate=True, interval=0.0, file=out)
    bar.update(50)
    bar.update(50)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "replicate 1/1: 50 of about 200 (estimate) messages (25%), 0 s"
    assert lines[1].startswith("replicate 1/1: 100 of about 200 (estimate) messages (50%)")
    assert lines[-1].endswith("- done")
    exact = io.StringIO()
    with LogProgress(10, "calibrating", "images", interval=0.0, file=exact) as b:
        b.update(10)
    assert exact.getvalue().splitlines()[0].startswith("calibrating: 10 of 10 images (100%)")


def test_quiet_between_intervals_and_a_log_bar_off_a_terminal(capsys):
    out = io.StringIO()
    bar = LogProgress(10, "x", "items", interval=3600.0, file=out)
    for _ in range(10):
        bar.update()
    bar.close()
    assert out.getvalue() == ""  # nothing within the interval, and no closing line for a short job
    assert isinstance(progress_bar(5, "x", "items"), LogProgress)  # pytest's stderr is not a terminal


def test_heartbeat_prints_while_a_step_runs():
    import time

    from e2escan.progress import Heartbeat

    out = io.StringIO()
    with Heartbeat("reproducing x", interval=0.05, file=out, force=True):
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and all(line.startswith("reproducing x: ") and line.endswith("s elapsed") for line in lines)
    quiet = io.StringIO()
    with Heartbeat("y", interval=0.05, file=quiet, force=True):
        pass
    assert quiet.getvalue() == ""
