"""How numbers read in prose: the one p-value format of every verdict, decision and warning.

The community table keeps its own fixed columns (4 decimals, ``report``); every
other place that shows a p-value (gate lines, sequential decisions, warnings,
plot captions) uses ``fmt_p``, so one output never shows one p-value two ways.
"""
from __future__ import annotations

import math


def fmt_p(p: float | None) -> str:
    """A p-value readable at any size: 0.0123, 0.0002, 4.74e-05; nan when there is none."""
    if p is None or not math.isfinite(p):
        return "nan"
    # below 1e-4 four decimals would print 0.0000: switch to scientific
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.2e}"
