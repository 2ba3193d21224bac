"""The time difference adjusted for the speed probe (CUPED; Deng, Xu, Kohavi & Walker 2013).

Each run with ``speed_probe = true`` carries X = the probe's time on its node just
before training, a covariate the treatment cannot change (the workload is fixed).
Regression adjustment: Y_adj = Y - theta (X - mean X), with theta the pooled
within-arm slope of training time on probe time (cov(X, Y) / var(X), both summed
over the arms' deviations from their own means, so the treatment's effect does not
leak into theta). The adjusted difference is tested with Welch's t on Y_adj. It
is reported beside the plain difference with the share of the difference's
variance it removed; it never replaces the community's columns or the gate.

Pure functions on (probe, time) pairs; nothing is printed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.analysis.stats import NAN, mean, std, tied, usable, welch_less

MIN_RUNS = 3   # per arm with a probe time: fewer say nothing about the slope


@dataclass
class Cuped:
    control: str
    treatment: str
    runs: dict[str, int]          # arm -> runs with both a probe and a training time
    theta: float = NAN            # seconds of training per second of probe
    delta: float = NAN            # adjusted treatment - control
    p: float = NAN                # adjusted, one-sided "faster" (Welch)
    plain_delta: float = NAN      # the same runs, unadjusted
    plain_p: float = NAN
    variance_removed: float = NAN  # 1 - var(adjusted difference) / var(plain difference)
    problem: str = ""


def _pairs(runs):
    return [(float(x), float(y)) for x, y in runs
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]


def adjust(control: list[tuple[float, float]], treatment: list[tuple[float, float]],
           control_name: str = "H0", treatment_name: str = "H1") -> Cuped:
    c, t = _pairs(control), _pairs(treatment)
    out = Cuped(control_name, treatment_name, {control_name: len(c), treatment_name: len(t)})
    if len(c) < MIN_RUNS or len(t) < MIN_RUNS:
        out.problem = f"needs {MIN_RUNS} runs per arm with a probe time"
        return out
    if not usable([v for pair in c + t for v in pair]):
        out.problem = "a probe or training time too large to use"
        return out
    if all(tied([x for x, _ in arm]) for arm in (c, t)):
        out.problem = "every probe took the same time within each arm"   # no slope to estimate
        return out
    sxx = sxy = 0.0
    for arm in (c, t):
        mx, my = mean([x for x, _ in arm]), mean([y for _, y in arm])
        sxx += math.fsum((x - mx) ** 2 for x, _ in arm)
        sxy += math.fsum((x - mx) * (y - my) for x, y in arm)
    if sxx == 0.0:
        out.problem = "every probe took the same time"
        return out
    out.theta = sxy / sxx
    gx = mean([x for x, _ in c + t])
    ca = [y - out.theta * (x - gx) for x, y in c]
    ta = [y - out.theta * (x - gx) for x, y in t]
    cy, ty = [y for _, y in c], [y for _, y in t]
    out.delta, out.p = mean(ta) - mean(ca), welch_less(ta, ca)
    out.plain_delta, out.plain_p = mean(ty) - mean(cy), welch_less(ty, cy)
    plain = std(cy) ** 2 / len(cy) + std(ty) ** 2 / len(ty)
    adjusted = std(ca) ** 2 / len(ca) + std(ta) ** 2 / len(ta)
    out.variance_removed = 1.0 - adjusted / plain if plain > 0 else NAN
    return out


def adjust_all(arms: dict[str, list[tuple[float, float]]], control: str) -> dict[str, Cuped]:
    """Treatment -> its adjusted comparison, when any run carries a probe time (else empty)."""
    if not any(x is not None for runs in arms.values() for x, _ in runs):
        return {}
    return {name: adjust(arms[control], runs, control, name) for name, runs in arms.items() if name != control}


def lines(results: dict[str, Cuped]) -> list[str]:
    if not results:
        return []
    out = ["speed probe: time difference adjusted for the probe's time (CUPED regression adjustment, "
           "Deng et al. 2013); beside the table, never in it:"]
    for name, r in results.items():
        if r.problem:
            out.append(f"  {name} vs {r.control}: no adjustment ({r.problem}; "
                       f"{', '.join(f'{a} {n}' for a, n in r.runs.items())})")
            continue
        out.append(f"  {name} vs {r.control}: adjusted +/- {r.delta:+.4f} s (p {_p(r.p)}) vs plain "
                   f"{r.plain_delta:+.4f} s (p {_p(r.plain_p)}) on the same runs; theta {r.theta:.3f} s/s; "
                   f"variance of the difference removed {100 * r.variance_removed:.0f}%")
    return out


def to_dict(r: Cuped) -> dict:
    return {"method": "CUPED (Deng et al. 2013), pooled within-arm theta, Welch on adjusted times",
            "control": r.control, "treatment": r.treatment, "runs": r.runs, "theta": r.theta,
            "time_delta": r.delta, "p": r.p, "plain_time_delta": r.plain_delta, "plain_p": r.plain_p,
            "variance_removed": r.variance_removed, "problem": r.problem}


def _p(p: float) -> str:
    if math.isnan(p):
        return "nan"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.2e}"
