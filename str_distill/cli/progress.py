"""Progress of long commands on stderr: a tqdm bar on a terminal; elsewhere (output to a file, a pipe, a CI log) a
plain line every 30 seconds, so that a job whose output is redirected is never silent for long.

>>> with Progress("predict", total=5000, unit="img") as bar:  # doctest: +SKIP
...     for batch in batches:
...         bar.update(len(batch))
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["LOG_INTERVAL", "Heartbeat", "Progress", "format_duration"]

#: Seconds between two progress lines when stderr is not a terminal.
LOG_INTERVAL = 30.0


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1 min 15 s"``, ``3725`` -> ``"1 h 02 min"``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """A progress display for ``total`` units of work (``None``: unknown).

    Args:
        what: the name on each line (e.g. the command).
        total: units expected, or ``None``.
        unit: the unit's name (``"img"``, ``"step"``, ``"file"``).
        mode: ``None``: a bar on a terminal, log lines otherwise; ``True``: a bar; ``False``: nothing; or one of
            ``"auto"``, ``"bar"``, ``"log"``, ``"none"``.
        interval: seconds between log lines (the first comes after ``interval`` seconds: short jobs print none).
        file: where to write (default: ``sys.stderr``).
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "img", mode: bool | str | None = None,
                 interval: float = LOG_INTERVAL, file: TextIO | None = None) -> None:
        self.what, self.total, self.unit, self.interval = what, total, unit, interval
        self.file = file if file is not None else sys.stderr
        modes = {None: "auto", True: "bar", False: "none"}
        self.mode = modes.get(mode, mode) if not isinstance(mode, str) else mode  # type: ignore[arg-type]
        if self.mode not in ("auto", "bar", "log", "none"):
            raise ValueError(f"progress mode must be auto, bar, log or none, got {mode!r}")
        if self.mode == "auto":
            self.mode = "bar" if _isatty(self.file) else "log"
        self.done = 0
        self.start = self._last = time.monotonic()
        self.lines = 0
        self._bar: Any = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=what, unit=unit, file=self.file, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "log" and time.monotonic() - self._last >= self.interval:
            self._log()

    def _log(self, final: bool = False) -> None:
        now = time.monotonic()
        self._last = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done:,}" if self.total is None else f"{self.done:,}/{self.total:,}"
        pct = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        eta = ""
        if not final and self.total and rate > 0:
            eta = f", about {format_duration((self.total - self.done) / rate)} left"
        state = "done" if final else "running"
        print(f"{self.what}: {state}, {count} {self.unit}{pct} in {format_duration(elapsed)}, {rate:.1f} {self.unit}/s"
              f"{eta}", file=self.file, flush=True)
        self.lines += 1

    def close(self) -> None:
        """End the display (log mode: a last line if any was printed, so the log shows the job finished)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "log" and self.lines:
            self._log(final=True)
            self.mode = "none"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError):
        return False


class Heartbeat:
    """For commands that log their own lines (``train``, ``pretrain``): when their output is not a terminal and
    nothing was logged for ``interval`` seconds (a slow first validation, slow steps between two log lines), print
    ``<what>: still running, <elapsed>`` so that the job is never silent for long.

    Use :meth:`log` as the command's log function; :meth:`close` (or the ``with`` block) stops the thread.

    Args:
        enabled: ``False``: :meth:`log` only prints (e.g. on a terminal, where a progress bar shows).
    """

    def __init__(self, what: str, interval: float = 60.0, enabled: bool = True, file: TextIO | None = None) -> None:
        import threading

        self.what, self.interval = what, interval
        self.file = file if file is not None else sys.stdout
        self.start = self._last = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="str-distill-heartbeat", daemon=True)
        if enabled:
            self._thread.start()

    def log(self, message: str) -> None:
        """Print one line of the command's own log (and restart the silence timer)."""
        with self._lock:
            print(message, file=self.file, flush=True)
            self._last = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(min(5.0, self.interval)):
            now = time.monotonic()
            if now - self._last >= self.interval:
                self.log(f"{self.what}: still running, {format_duration(now - self.start)} elapsed")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
