"""A progress bar with its ETA on stderr, for ``harness/design/progress.py`` callbacks.

Drawn only on a terminal, only once the work has taken more than ``DELAY_S`` (short work
stays silent), never with ``--quiet``; one line redrawn in place and cleared at the end.
"""
from __future__ import annotations

import sys
import time

DELAY_S = 1.0
WIDTH = 24


def _clock(seconds: float) -> str:
    m, s = divmod(int(max(0.0, seconds)), 60)
    return f"{m}:{s:02d}"


class Bar:
    def __init__(self, stream=None, quiet: bool = False) -> None:
        self.out = stream or sys.stderr
        self.on = not quiet and self.out.isatty()
        self.t0 = time.monotonic()
        self.label = ""
        self.start = self.t0
        self.drawn = False
        self._last = 0.0

    def __call__(self, label: str, done: float, total: float) -> None:
        if not self.on or total <= 0:
            return
        now = time.monotonic()
        if label != self.label:          # a new stage: its own ETA
            self.label, self.start = label, now
        if now - self.t0 < DELAY_S or (now - self._last < 0.1 and done < total):
            return
        self._last = now
        frac = min(1.0, done / total)
        filled = int(frac * WIDTH)
        spent = now - self.start
        eta = spent * (1 - frac) / frac if frac > 0 else float("nan")
        eta_s = _clock(eta) if frac > 0 else "?"
        self.out.write(f"\r{label} [{'#' * filled}{'.' * (WIDTH - filled)}] {100 * frac:3.0f}% "
                       f"ETA {eta_s}  elapsed {_clock(now - self.t0)}\x1b[K")
        self.out.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.drawn = False
