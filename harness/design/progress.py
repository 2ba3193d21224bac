"""Progress of long computations (calibrations, simulations) as a callback, never output.

The design layer computes; the command that called it decides how (and whether) to show
progress (``harness/cli/bar.py`` draws a bar on a terminal). A command installs its
callback with ``reporting(callback)``; design code calls ``report(label, done, total)``
at its natural steps. Without a callback installed, ``report`` does nothing.
A context variable rather than a parameter: calibrations run deep inside
``SequentialPlan`` and behind a cache, where threading a parameter through every caller
would change a dozen signatures for one concern.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Callback = Callable[[str, float, float], None]
_current: contextvars.ContextVar[Callback | None] = contextvars.ContextVar("harness_progress", default=None)


def report(label: str, done: float, total: float) -> None:
    """``done`` of ``total`` units of the computation named ``label``."""
    cb = _current.get()
    if cb is not None:
        cb(label, done, total)


@contextlib.contextmanager
def reporting(callback: Callback | None) -> Iterator[None]:
    token = _current.set(callback)
    try:
        yield
    finally:
        _current.reset(token)
