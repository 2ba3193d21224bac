"""The record gate's thresholds and every other default that several modules share.

One home, so a changed rule is one edit: the experiment file (``spec``), the
statistics (``stats``, ``sequential``, ``simulate``), the commands (``analyze``,
``plan``, ``run``) and their help texts all read these names.

A setting is resolved the same way everywhere: a command-line flag beats the
experiment file (or the ``spec.json`` of a results folder), which beats the default
here. ``pick`` and ``resolve`` are that rule, written once.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TARGET_LOSS = 3.28      # the speedrun's loss criterion (FineWeb validation loss)
ALPHA_TIME = 0.001      # the time test must reach p < this (one-sided Welch)
ALPHA_LOSS = 0.01       # the loss test must reach p < this (one-sided one-sample t)
MIN_EFFECT = 0.0        # seconds a treatment must gain to be worth it (sequential futility)
RUNS = 10               # runs per hypothesis of a fixed design
RETRIES = 2             # extra attempts for a failed or timed-out run
FAMILY_CONFIDENCE = 0.95   # simultaneous intervals of a multi-arm family (Bonferroni over its arms)
# the blocked time test's df guard raises each arm's variance to its one-sided 1 - q upper
# bound (harness/analysis/blocked.py), q by the arm's within-node df: calibrated in
# bench/bench_blocked.py (an arm with 1 df reached 2.2x alpha at q = 0.05 and 1.1x at 0.025;
# q = 0.1 from 3 df reached 1.2x at alpha 0.001)
BLOCKED_DF_BOUND_1DF = 1e-2
BLOCKED_DF_BOUND = 5e-2

# the gate's three figures, as keys of experiment files, flags (--target-loss, ...) and JSON
GATE = {"target_loss": TARGET_LOSS, "alpha_time": ALPHA_TIME, "alpha_loss": ALPHA_LOSS}


def pick(flag: Any, stored: Any, default: Any) -> Any:
    """Flag beats file beats default (``None`` means "not given")."""
    if flag is not None:
        return flag
    return stored if stored is not None else default


def resolve(flags: Any, stored: Any, defaults: Mapping[str, Any] = GATE) -> dict[str, Any]:
    """Every name of ``defaults`` resolved by ``pick``.

    ``flags`` and ``stored`` are mappings or objects with those names as attributes
    (an ``argparse.Namespace``, a loaded dataset); a missing name counts as not given.
    """
    return {name: pick(_get(flags, name), _get(stored, name), default)
            for name, default in defaults.items()}


def _get(source: Any, name: str) -> Any:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)
