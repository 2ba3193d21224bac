"""Arm names of step sweeps: ``steps = [1550, 1575]`` becomes arms ``H1@1550``, ``H1@1575``.

One convention, read by the experiment file (which expands a sweep into arms) and by the
analysis and the design (which find a sweep's arms by their names).
"""
from __future__ import annotations

import re

SWEEP_NAME = re.compile(r"^(?P<base>.+)@(?P<steps>\d+)$")
TEMPLATE = "{steps}"


# ---------------------------------------------------------------- expansion

def expand(name: str, steps: list, args: dict) -> list[tuple[str, int, dict]]:
    """(arm name, step count, args) per swept step count; ValueError says what is wrong."""
    if not steps or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in steps):
        raise ValueError(f"got {steps!r}, expected a list of positive step counts, e.g. [1550, 1560, 1575]")
    if len(set(steps)) != len(steps):
        raise ValueError(f"{steps!r} repeats a step count; give each once")
    if len(steps) < 2:
        raise ValueError("a sweep needs 2 or more step counts (or give steps = N for one)")
    templated = [k for k, v in args.items() if v == TEMPLATE]
    if not templated:
        raise ValueError(f"a sweep needs its step-count flag templated in args, e.g. "
                         f"num_iterations = \"{TEMPLATE}\"")
    out = []
    for s in sorted(steps):
        out.append((f"{name}@{s}", s, {k: (s if v == TEMPLATE else v) for k, v in args.items()}))
    return out


def sweeps(names: list[str]) -> dict[str, list[tuple[int, str]]]:
    """base -> [(steps, arm name)] sorted by steps, for the arms named BASE@STEPS."""
    out: dict[str, list[tuple[int, str]]] = {}
    for n in names:
        m = SWEEP_NAME.match(n)
        if m:
            out.setdefault(m["base"], []).append((int(m["steps"]), n))
    return {b: sorted(v) for b, v in out.items() if len(v) >= 2}
