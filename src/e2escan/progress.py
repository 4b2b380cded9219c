"""Progress for long commands: a tqdm bar on a terminal, a plain line every few seconds in a log.

When stderr is not a terminal (a CI log, ``2> run.log``) tqdm would be
silent or write carriage returns; :class:`LogProgress` instead prints one line
every ``interval`` seconds, and a last one when closed. A total that is only
an expectation (e.g. Poisson message counts) is labelled as an estimate.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class LogProgress:
    """The part of tqdm's interface the commands use: ``update``, ``write``, ``close``, a context manager."""

    def __init__(self, total: int, desc: str, unit: str, *, estimate: bool = False, interval: float = 5.0,
                 file: TextIO | None = None, initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.estimate = int(total), desc, unit, estimate
        self.interval, self.file, self.n = interval, file or sys.stderr, int(initial)
        self.started = self._last = time.monotonic()
        self._closed = False

    def _line(self) -> str:
        elapsed = time.monotonic() - self.started
        of = f"about {self.total:,} (estimate)" if self.estimate else f"{self.total:,}"
        pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total > 0 else ""
        return f"{self.desc}: {self.n:,} of {of} {self.unit}{pct}, {elapsed:.0f} s"

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(self._line(), file=self.file, flush=True)

    def write(self, text: str, file: TextIO | None = None) -> None:
        print(text, file=file or self.file, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if time.monotonic() - self.started >= self.interval:
                print(self._line() + " - done", file=self.file, flush=True)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: int, desc: str, unit: str, *, estimate: bool = False, leave: bool = True,
                 initial: int = 0, interval: float = 5.0) -> Any:
    """A tqdm bar when stderr is a terminal, else a :class:`LogProgress` printing a line every ``interval`` s."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        label = f"{desc} (total estimated)" if estimate else desc
        return tqdm(total=total, desc=label, unit=unit, file=sys.stderr, leave=leave, initial=initial,
                    dynamic_ncols=True)
    return LogProgress(total, desc, unit, estimate=estimate, interval=interval, initial=initial)


class Heartbeat:
    """While a step with no countable progress runs, print ``label: N s elapsed`` every ``interval`` seconds
    (only when stderr is not a terminal, where a silent minute looks like a hang)."""

    def __init__(self, label: str, interval: float = 10.0, file: TextIO | None = None,
                 force: bool = False) -> None:
        import threading

        self.label, self.interval, self.file = label, interval, file or sys.stderr
        self.enabled = force or not self.file.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self.started = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            print(f"{self.label}: {time.monotonic() - self.started:.0f} s elapsed", file=self.file, flush=True)

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()
