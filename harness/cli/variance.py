"""Where borrowed sigma comes from (for `harness run` and `harness analyze`): read the earlier runs, hand their values to ``borrow``.

Glue (file I/O through ``sources``); the statistics are in ``borrow``.
"""
from __future__ import annotations

import math
import os

from harness.analysis import borrow
from harness.data import sources
from harness.errors import UserError


def load_plan(known_loss_sigma: float | None, variance_from: str | None, current_hardware: list | None,
              tested_sources: set[str] = frozenset(), flag: str = "--variance-from",
              same_hardware: bool = False):
    """The VariancePlan of a known loss sigma and/or a folder of earlier runs; None: neither.

    ``current_hardware``: (model, count) or None per run being tested (or of this host);
    ``same_hardware`` (``simulate``: no runs yet): the earlier runs' own hardware.
    ``tested_sources``: logs of the runs being tested, which must not also be borrowed.
    """
    if known_loss_sigma is not None and not (known_loss_sigma > 0 and math.isfinite(known_loss_sigma)):
        raise UserError(f"--known-loss-sigma {known_loss_sigma}: expected a standard deviation > 0, "
                        f"e.g. 0.0013")
    borrowed = None
    if variance_from is not None:
        if not os.path.isdir(variance_from):
            raise UserError(f"{flag} {variance_from}: no such folder; give the folder of the earlier "
                            f"runs' logs (or their results folder)")
        earlier = sources.load([variance_from], "steps")
        tested = {os.path.realpath(s) for s in tested_sources}
        again = [r.source for g in earlier.groups for r in g.runs if os.path.realpath(r.source) in tested]
        if again:
            raise UserError(f"{flag} {variance_from}: holds runs being tested ({again[0]}); "
                            f"borrow from earlier runs only")
        borrowed = {"source": variance_from, "losses": [g.losses for g in earlier.groups],
                    "times": [g.times for g in earlier.groups],
                    "hardware": [r.hardware for g in earlier.groups for r in g.runs]}
        if same_hardware:
            current_hardware = borrowed["hardware"]
        if borrow.estimate(borrowed["losses"], variance_from) is None:
            raise UserError(f"{flag} {variance_from}: no group with 2 finished runs to estimate sigma from")
    return borrow.make_plan(known_loss_sigma, borrowed, current_hardware)


def host_hardware(gpus: dict) -> tuple[str, int] | None:
    """This host's GPUs ({"names": [...], "count": n}) as a run's hardware; None when none."""
    names = list(gpus.get("names") or [])
    if not names:
        return None
    return (" + ".join(sorted(set(names))), int(gpus.get("count") or len(names)))
