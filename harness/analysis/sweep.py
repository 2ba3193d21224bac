"""Step sweeps: one hypothesis at several step counts, one model of the final loss.

An experiment may give a hypothesis ``steps = [1550, 1560, 1575]`` with its step-count
flag templated, e.g. ``args = { num_iterations = "{steps}" }``; it is expanded into
one arm per step count, named ``H1@1550``, ``H1@1560``, ``H1@1575``.

The model (pure functions, no file I/O): a **local linear fit** of the final loss
against the step count over the swept range, fitted to every run of the sweep by
least squares, with one **pooled residual sigma** (df = runs - 2; plus the borrowed
df when a loss sigma is borrowed and the check allows, or a z-test when sigma is
known). "Local": the range of a sweep is a few percent of the step count, where the
loss curve is close to a straight line; predictions are made only inside the swept
range. At each swept step count the predicted mean loss is tested one-sided against
the target (p below) like the table's loss test, and the smallest step count whose
prediction is below the target at alpha_loss, counted down from the most steps (a
step-down test: a false answer is at most alpha_loss in all), is reported with its interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.analysis.stats import NAN, mean, norm_sf, t_cdf, t_ppf, tied, usable
from harness.caveat import Caveat


# ---------------------------------------------------------------- the model

@dataclass
class Fit:
    """Least-squares line loss = a + b * (steps - x0) with a pooled residual sigma."""

    x0: float
    a: float
    b: float
    sxx: float
    n: int
    sigma: float
    df: float            # inf: sigma known
    lo: int              # swept range
    hi: int
    note: str = ""       # what sigma it uses

    def predict(self, s: float) -> tuple[float, float]:
        """(predicted mean loss, its standard error) at step count s."""
        d = s - self.x0
        return self.a + self.b * d, self.sigma * math.sqrt(1.0 / self.n + d * d / self.sxx)

    def p_below(self, s: float, target: float) -> float:
        m, se = self.predict(s)
        return _cdf((m - target) / se, self.df) if se > 0 else NAN

    def upper(self, s: float, alpha: float) -> float:
        """One-sided (1 - alpha) upper bound of the mean loss at s."""
        m, se = self.predict(s)
        return m + _ppf(1.0 - alpha, self.df) * se


def _cdf(t: float, df: float) -> float:
    return norm_sf(-t) if math.isinf(df) else t_cdf(t, df)


def _ppf(q: float, df: float) -> float:
    if math.isinf(df):
        lo, hi = -40.0, 40.0
        for _ in range(200):          # bisection on the normal cdf (no scipy on this path)
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if norm_sf(-mid) < q else (lo, mid)
        return 0.5 * (lo + hi)
    return t_ppf(q, df)


def fit(points: list[tuple[int, list[float]]], sigma=None, level: float | None = None) -> Fit | None:
    """The line through every run of the sweep; None below 3 runs or 2 distinct step counts.

    ``sigma``: a ``borrow.Sigma`` (borrowed: pooled with the residuals, unless the
    residual spread is larger at ``level`` (one-sided F test); known: used as is).
    """
    xs = [float(s) for s, ls in points for x in ls if math.isfinite(x)]
    ys = [x for s, ls in points for x in ls if math.isfinite(x)]
    if len(xs) < 3 or len(set(xs)) < 2 or not usable(ys):
        return None
    x0, y0 = mean(xs), mean(ys)
    sxx = math.fsum((x - x0) ** 2 for x in xs)
    b = math.fsum((x - x0) * (y - y0) for x, y in zip(xs, ys)) / sxx
    a = y0
    rss = math.fsum((y - a - b * (x - x0)) ** 2 for x, y in zip(xs, ys))
    groups = [[x for x in ls if math.isfinite(x)] for _, ls in points]
    if all(tied(g) for g in groups if g) and len(set(xs)) == 2:
        rss = 0.0     # tied losses at two step counts: the line is exact, round-off is not spread
    df = len(xs) - 2
    if tied(ys):
        rss = 0.0
    s2 = rss / df
    if s2 == 0.0 and sigma is None:
        return None   # no spread about the line: no test, never p = 0
    note = f"pooled residual sigma of the fit ({df} df)"
    if sigma is not None and sigma.known:
        s2, df, note = sigma.value ** 2, math.inf, f"known sigma {sigma.value:g} (z)"
    elif sigma is not None:
        from harness.analysis import borrow
        p = 1.0 - borrow.f_cdf(s2 / sigma.value ** 2, df, sigma.df)
        if level is None or p >= level:
            s2 = (rss + sigma.df * sigma.value ** 2) / (df + sigma.df)
            note = f"residual sigma pooled with the borrowed {sigma.value:.4g} ({df} + {sigma.df:g} df)"
            df = df + sigma.df
        else:
            note += f"; the borrowed sigma {sigma.value:.4g} is not used (residuals spread more, F p {p:.2g})"
    return Fit(x0, a, b, sxx, len(xs), math.sqrt(s2), df, int(min(xs)), int(max(xs)), note)


# ---------------------------------------------------------------- the table

NOT_REACHED = "not-reached"


def verdict_text(verdict: str, target: float) -> str:
    """A point's verdict as the tables show it (the sweep's, and the robust checks' Loss column)."""
    return {"below": f"< {target:g}", "above": f"> {target:g}", NOT_REACHED: "not reached"}.get(verdict, "~")


@dataclass
class Point:
    steps: int
    name: str
    runs: int
    time_delta: float
    loss_mean: float
    predicted: float
    p: float             # one-sided p that the mean loss at this step count is below the target
    verdict: str         # below (claimed by the step-down) | not-reached (p < alpha, not claimed) | above | ~


@dataclass
class Sweep:
    base: str
    target: float
    alpha: float
    points: list[Point]
    fit: Fit | None
    smallest: Point | None = None
    interval: tuple[float, float] = (NAN, NAN)      # two-sided 1 - 2 alpha of its mean loss
    crossing: int | None = None                    # smallest integer step count below, interpolated
    warnings: list[Caveat] = field(default_factory=list)


def analyse(base: str, arms: list[tuple[int, str, list[float], list[float]]], control_times: list[float],
            target: float, alpha: float, sigma=None, level: float | None = None) -> Sweep:
    """``arms``: (steps, name, losses, times) per step count of one sweep."""
    pts = [(s, ls) for s, _, ls, _ in arms]
    f = fit(pts, sigma, level)
    c_t = mean([t for t in control_times if math.isfinite(t)]) if control_times else NAN
    out = Sweep(base, target, alpha, [], f)
    if f is None:
        out.warnings.append(Caveat("sweep", base, f"sweep {base}: the loss model needs 3 runs over 2 step "
                                                  f"counts; only the arms' own tests apply"))
    if any(not math.isfinite(x) for _, _, ls, _ in arms for x in ls):
        out.warnings.append(Caveat("sweep", base, f"sweep {base}: diverged runs (loss NaN) are left out of the fit"))
    for s, name, ls, ts in arms:
        fin = [x for x in ls if math.isfinite(x)]
        pred, p, verdict = NAN, NAN, "~"
        if f is not None:
            pred = f.predict(s)[0]
            p = f.p_below(s, target)
            p_above = 1.0 - p if math.isfinite(p) else NAN
            verdict = "below" if p < alpha else "above" if p_above < alpha else "~"
        t_fin = [t for t in ts if math.isfinite(t)]
        out.points.append(Point(s, name, len(ls), mean(t_fin) - c_t if t_fin else NAN,
                                mean(fin) if fin else NAN, pred, p, verdict))
    # step-down from the most steps (fixed-sequence testing, as design/sweep_seq.py): the
    # answer is the last of the step counts below the target counted down from the largest,
    # so a false one is at most alpha_loss in all; "the smallest with p < alpha" is not (each
    # step count at alpha: about 2.4 alpha with 3 step counts all on the target)
    below = []
    for pt in sorted(out.points, key=lambda pt: -pt.steps):
        if pt.verdict != "below":
            break
        below.append(pt)
    for pt in out.points:
        # below alone, under a step count that is not: the step-down claims nothing there,
        # and the table must not say otherwise
        if pt.verdict == "below" and pt not in below:
            pt.verdict = NOT_REACHED
    if f is not None and below:
        out.smallest = below[-1]
        m, se = f.predict(out.smallest.steps)
        q = _ppf(1.0 - alpha, f.df) * se
        out.interval = (m - q, m + q)
        run = [s for s in range(f.hi, f.lo - 1, -1)]
        ok = [s for s in run[:next((i for i, s in enumerate(run) if f.upper(s, alpha) >= target), len(run))]]
        out.crossing = ok[-1] if ok else None
    return out


def lines(sw: Sweep) -> list[str]:
    """The sweep table and its conclusion, as text lines."""
    head = ["Steps", "Time +/-", "N", "Loss μ", "Loss fit", "Loss p", "verdict"]
    rows = [[str(p.steps), f"{p.time_delta:+.4f}", str(p.runs), f"{p.loss_mean:.4f}", f"{p.predicted:.5f}",
             f"{p.p:.4f}", verdict_text(p.verdict, sw.target)]
            for p in sw.points]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    out = [f"sweep {sw.base}: final loss vs steps, local linear fit over {sw.fit.lo}..{sw.fit.hi} steps, "
           f"{sw.fit.note}; Loss p: one-sided, predicted mean below {sw.target:g}; "
           f"Time +/- vs the control" if sw.fit else f"sweep {sw.base}: no loss model (too few runs)"]
    out += ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head] + rows]
    if sw.fit is not None:
        per_k = sw.fit.b * 1000
        out.append(f"  slope {per_k:+.5f} loss per 1000 steps")
    if any(p.verdict == NOT_REACHED for p in sw.points):
        out.append(f"  not reached: Loss p below alpha_loss {sw.alpha:g}, but the step-down test (counted "
                   f"from the most steps) stopped at a larger step count that is not below {sw.target:g}: "
                   f"no claim there")
    if sw.smallest is not None:
        lo, hi = sw.interval
        out.append(f"  smallest step count below {sw.target:g} at alpha_loss {sw.alpha:g}: {sw.smallest.steps} "
                   f"(predicted loss {sw.smallest.predicted:.5f}, {100 * (1 - 2 * sw.alpha):g}% interval "
                   f"[{lo:.5f}, {hi:.5f}])")
        if sw.crossing is not None and sw.crossing < sw.smallest.steps:
            out.append(f"  interpolated (not run): from {sw.crossing} steps the fit's upper bound is below "
                       f"{sw.target:g}")
    elif sw.fit is not None:
        out.append(f"  no swept step count is below {sw.target:g} at alpha_loss {sw.alpha:g}")
    return out


def to_dict(sw: Sweep) -> dict:
    return {"base": sw.base, "target": sw.target, "alpha_loss": sw.alpha,
            "fit": None if sw.fit is None else {"slope_per_step": sw.fit.b, "sigma": sw.fit.sigma,
                                                "df": None if math.isinf(sw.fit.df) else sw.fit.df,
                                                "range": [sw.fit.lo, sw.fit.hi], "note": sw.fit.note},
            "points": [{"steps": p.steps, "name": p.name, "runs": p.runs, "time_delta": p.time_delta,
                        "loss_mean": p.loss_mean, "loss_predicted": p.predicted, "loss_p": p.p,
                        "verdict": p.verdict} for p in sw.points],
            "smallest": None if sw.smallest is None else sw.smallest.steps,
            "smallest_interval": list(sw.interval), "interpolated_smallest": sw.crossing}
