"""``--until-decisive`` with borrowed or known sigma: the sequential design of borrow.py.

The looks, spending functions, futility rule and decisions are those of
``harness.design.sequential`` (same looks n = 2..M, same ``first_crossing``); only the
statistics change, and with them the boundaries:

* loss: the one-sample t with the treatment's variance pooled with the borrowed one
  (df = n - 1 + df_b), or the z-test when sigma is known;
* time: Student's pooled t with the earlier runs as a third sample (borrow.py).
* At every look the consistency check of ``borrow`` runs on the runs so far; a look
  whose check rejects uses the arm's own variance (the plain statistic).

Boundaries are calibrated by Monte Carlo of that whole procedure (check included)
under the borrowed sigma being right, with the same spending and seeds as
``sequential``: the borrowed chi^2 is one more draw per simulated experiment. Both
statistics are then pivotal (their null laws depend only on df_b and the check
level), so one pass gives the boundaries. What a wrong borrowed sigma (or a
treatment that changes the time noise) does is measured by bench/bench_borrow.py.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math

import numpy as np

from harness.design import progress, sequential as seq
from harness import thresholds as th
from harness.analysis.borrow import VariancePlan

CAL_VERSION = 3           # 2: pooled-t time statistic, one-sided check; 3: joint spending under both laws
# Pass boundaries are robust to a borrowed sigma that is too small: when the runs' true
# sigma is ROBUST_RATIO x the borrowed runs', the false-pass rate stays at or below
# ROBUST_INFLATION x alpha (the consistency check alone has little power in 2-5 runs).
ROBUST_RATIO = 1.5
ROBUST_INFLATION = 1.35     # the goal is 1.5; 0.15 is the margin for simulation error (bench_borrow.py)
# Pass spending of a borrowed design: alpha * (n / M) ** rho. The plain design's 3 keeps
# alpha for the last looks; with sigma borrowed the early looks have the power to use it.
# Time is spent early (its power is rarely the limit, the control's runs are); the loss
# at 1.5 (bench/bench_borrow.py --frontier: runs against power at each rho).
RHO_PASS = 1.5
RHO_PASS_TIME = 0.5


# --------------------------------------------------------------------------- p-values (arrays)
def _stdtr(df, t):
    from scipy import special
    return special.stdtr(df, t)


def _f_upper(ratio, d1, d2):
    """One-sided F-test p of "s^2 > s_b^2" for ratio = s^2 / s_b^2 with (d1, d2) df (borrow.py)."""
    from scipy import special
    with np.errstate(divide="ignore", invalid="ignore"):
        return special.fdtrc(d1, d2, ratio)


def loss_p(m, v, n, sb2: float | np.ndarray, df_b: float, level: float):
    """(p below, p above, t) of looks with means ``m`` and variances ``v`` of n runs.

    ``sb2`` is the borrowed variance (the known one when df_b is inf); where the F check
    rejects (borrowed only), the plain one-sample t of the runs' own variance is used.
    """
    m, v = np.asarray(m, dtype=float), np.asarray(v, dtype=float)
    n = np.asarray(n, dtype=float)
    sb2 = np.asarray(sb2, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if math.isinf(df_b):
            t = m / np.sqrt(sb2 / n)
            return _stdtr(np.inf, t), _stdtr(np.inf, -t), t
        df = n - 1 + df_b
        pool = ((n - 1) * v + df_b * sb2) / df
        t = m / np.sqrt(pool / n)
        own_t = np.where(v > 0, m / np.sqrt(v / n), np.nan)
        ok = _f_upper(v / sb2, n - 1, df_b) >= level
        t = np.where(ok, t, own_t)
        dof = np.where(ok, df, n - 1)
    return _stdtr(dof, t), _stdtr(dof, -t), t


def time_p(diff, vc, vt, n, sb2, df_b: float, level: float, shift: float = 0.0):
    """(p faster, p not faster by ``shift``, t) of n runs per arm: the pooled t of borrow.py.

    Where either arm's F check rejects (borrowed only), Welch's t of the runs alone.
    """
    diff = np.asarray(diff, dtype=float)
    vc, vt = np.asarray(vc, dtype=float), np.asarray(vt, dtype=float)
    n = np.asarray(n, dtype=float)
    sb2 = np.asarray(sb2, dtype=float)
    wp, wf, wt = seq.welch_p(diff, vc, vt, n, shift)
    with np.errstate(divide="ignore", invalid="ignore"):
        if math.isinf(df_b):
            var, df = sb2 + 0 * vc, np.inf
            ok = np.ones(np.broadcast(diff, vc, sb2).shape, dtype=bool)
        else:
            df = 2 * (n - 1) + df_b
            var = ((n - 1) * (vc + vt) + df_b * sb2) / df
            ok = (_f_upper(vc / sb2, n - 1, df_b) >= level) & (_f_upper(vt / sb2, n - 1, df_b) >= level)
        se = np.sqrt(var * 2.0 / n)
        t, tf = diff / se, (diff + shift) / se
        pp, pf = _stdtr(df, t), _stdtr(df, -tf)
    return np.where(ok, pp, wp), np.where(ok, pf, wf), np.where(ok, t, wt)


# --------------------------------------------------------------------------- calibration
def _chi(rng_seed: list, size: int, df_b: float) -> np.ndarray:
    """Borrowed variances s_b^2 / sigma^2 of ``size`` simulated experiments."""
    if math.isinf(df_b):
        return np.ones(size)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(rng_seed)))
    return rng.chisquare(df_b, size) / df_b


def _null_loss(max_runs: int, paths: int, df_b: float, level: float, ratio: float = 1.0):
    """Null p-values of the loss statistic; the runs' sigma ``ratio`` x the borrowed runs' sigma."""
    n = np.arange(2, max_runs + 1)
    cols = []
    for i, (z, _) in enumerate(seq._chunks("one-sample", max_runs, paths)):
        m, v = seq._moments(z * ratio)
        sb2 = _chi([seq.CAL_SEED, CAL_VERSION, 7, i, int(min(df_b, 1e6))], z.shape[0], df_b)[:, None]
        cols.append(loss_p(m, v, n, sb2, df_b, level)[0])
        progress.report(f"calibrating borrowed loss boundaries (M {max_runs}, sigma x{ratio:g})",
                        (i + 1) * seq.CHUNK, paths)
    return np.concatenate(cols)


def _null_time(max_runs: int, paths: int, df_b: float, level: float, ratio: float = 1.0):
    """Null p-values of the time statistic, equal sigma in both arms (``ratio`` x the borrowed)."""
    n = np.arange(2, max_runs + 1)
    cols = []
    for i, (zc, zt) in enumerate(seq._chunks("welch", max_runs, paths)):
        mc, vc = seq._moments(zc * ratio)
        mt, vt = seq._moments(zt * ratio)
        sb2 = _chi([seq.CAL_SEED, CAL_VERSION, 8, i, int(min(df_b, 1e6))], zc.shape[0], df_b)[:, None]
        cols.append(time_p(mt - mc, vc, vt, n, sb2, df_b, level)[0])
        progress.report(f"calibrating borrowed time boundaries (M {max_runs}, sigma x{ratio:g})",
                        (i + 1) * seq.CHUNK, paths)
    return np.concatenate(cols)


def _joint_spend(P: np.ndarray, Pr: np.ndarray, alpha: float, alpha_r: float, rho: float,
                 max_runs: int) -> np.ndarray:
    """Boundaries that spend at most alpha * (n/M)^rho under ``P`` (the borrowed sigma right)
    and at most alpha_r * (n/M)^rho under ``Pr`` (it is ROBUST_RATIO x too small), look by look.

    Each look's boundary is the larger one either law allows, the smaller of the two: both
    cumulative errors stay within their spending, and what one look could not spend (the
    off law binds at the early looks, where the check has no power) passes to the next.
    """
    laws = [[P, alpha, np.ones(P.shape[0], dtype=bool), 0], [Pr, alpha_r, np.ones(Pr.shape[0], dtype=bool), 0]]
    out = np.zeros(P.shape[1])
    for j in range(P.shape[1]):
        b = math.inf
        for Q, a, alive, crossed in laws:
            k = int(math.floor(seq.spend(a, j + 2, max_runs, rho) * Q.shape[0] + 0.5)) - crossed
            col = Q[alive, j]
            if k <= 0 or col.size == 0:
                bj = 0.0
            elif k < col.size:
                part = np.partition(col, [k - 1, k])
                bj = 0.5 * (float(part[k - 1]) + float(part[k]))
            else:
                bj = float(col.max())
            b = min(b, bj)
        out[j] = b
        for law in laws:
            newly = law[2] & (law[0][:, j] <= b)
            law[3] += int(newly.sum())
            law[2] &= ~newly
    return out


def _calibrate(kind: str, alpha: float, rho: float, max_runs: int, paths: int, df_b: float,
               level: float, robust: bool) -> dict:
    """Spending at the borrowed sigma being right; with ``robust`` (the pass side), at
    seq.target(alpha) x alpha (the plain design's margin for the calibration's own
    simulation error) jointly with a borrowed sigma ROBUST_RATIO x too small erring at
    most ROBUST_INFLATION x alpha (``_joint_spend``)."""
    null = _null_loss if kind == "loss" else _null_time
    P = null(max_runs, paths, df_b, level)
    if robust and not math.isinf(df_b):
        Pr = null(max_runs, paths, df_b, level, ROBUST_RATIO)
        b = _joint_spend(P, Pr, alpha * seq.target(alpha), ROBUST_INFLATION * alpha, rho, max_runs)
        res = {"error": float((P <= b).any(axis=1).mean()),
               "error_at_ratio": float((Pr <= b).any(axis=1).mean())}
    else:   # a known sigma (its first look exact) and the futility side: alpha itself
        b = seq._spend_calibrate(P, alpha, rho, max_runs, exact_first=math.isinf(df_b))
        res = {"error": float((P <= b).any(axis=1).mean())}
    res["boundaries"] = b.tolist()
    return res


PACKAGED = seq.PACKAGED / "borrowed"     # committed (scripts/write_calibrations.py), read-only


@functools.lru_cache(maxsize=64)
def boundaries(kind: str, alpha: float, max_runs: int, rho: float, df_b: float,
               level: float, robust: bool = False) -> tuple[float, ...]:
    """Boundaries for looks n = 2..M of the borrowed "loss" or "time" statistic (cached on disk)."""
    return tuple(calibration(kind, alpha, max_runs, rho, df_b, level, robust)["boundaries"])


def calibration_name(kind: str, alpha: float, max_runs: int, rho: float, df_b: float, level: float,
                     robust: bool) -> str:
    """The file name's readable part (scripts/write_calibrations.py parses it back)."""
    df = "inf" if math.isinf(df_b) else f"{float(df_b):g}"
    return (f"borrowed-{kind}-a{float(alpha):g}-M{max_runs}-df{df}-r{float(rho):g}-l{float(level):g}"
            + ("-robust" if robust else ""))


def calibration(kind: str, alpha: float, max_runs: int, rho: float, df_b: float,
                level: float, robust: bool = False) -> dict:
    """The full calibration record: the committed one, the cached one, or computed and cached."""
    seq._check_alpha("alpha", alpha)
    seq._check_max_runs(max_runs)
    if kind not in ("loss", "time"):
        raise ValueError(kind)
    robust = bool(robust) and not math.isinf(df_b)
    paths = seq.calibration_paths(alpha)
    key = {"version": CAL_VERSION, "base": seq.CAL_VERSION, "kind": kind, "alpha": repr(float(alpha)),
           "max_runs": int(max_runs), "rho": repr(float(rho)), "paths": paths, "seed": seq.CAL_SEED,
           "df_b": "inf" if math.isinf(df_b) else repr(float(df_b)), "level": repr(float(level)),
           "robust": [ROBUST_RATIO, ROBUST_INFLATION, seq.target(float(alpha))] if robust else None}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{calibration_name(kind, alpha, max_runs, rho, df_b, level, robust)}-{digest}.json"
    data = seq.read_calibration(PACKAGED, name, key, boundaries=max_runs - 1)
    if data is None:
        data = {"key": key, **_calibrate(kind, alpha, rho, max_runs, paths, df_b, level, robust)}
        seq.cache_calibration(name, data)
    return data


# --------------------------------------------------------------------------- the plan
class BorrowedPlan(seq.SequentialPlan):
    """``SequentialPlan`` whose loss and/or time statistics use a ``VariancePlan``."""

    def __init__(self, control, treatments, alpha_time=th.ALPHA_TIME, alpha_loss=th.ALPHA_LOSS,
                 target_loss=th.TARGET_LOSS, min_effect=th.MIN_EFFECT, max_runs=10, futility_alpha=seq.FUTILITY_ALPHA, *,
                 variance: VariancePlan, saved: dict | None = None) -> None:
        self.variance = variance
        if saved is None:   # every boundary computed here, so the plain ones are not calibrated in vain
            seq._check_max_runs(max_runs)
            for a in (alpha_time, alpha_loss, futility_alpha):
                seq._check_alpha("alpha", a)
            M, lv = max_runs, variance.level
            lo, tm = variance.loss, variance.time

            def b(kind, alpha, rho, robust=False):
                s = lo if kind == "loss" else tm
                if s is not None:       # robust for passing; a futility stop only costs power
                    return list(boundaries(kind, alpha, M, rho, s.df, lv, robust))
                # not borrowed: exactly the plain design's boundaries (its spending, committed files)
                plain = seq.RHO_PASS if robust else rho
                return list(seq.boundaries("one-sample" if kind == "loss" else "welch", alpha, M, plain))
            saved = {"boundaries": {"time_pass": b("time", alpha_time, RHO_PASS_TIME, True),
                                    "time_fail": b("time", futility_alpha, seq.RHO_FAIL),
                                    "loss_pass": b("loss", alpha_loss, RHO_PASS, True),
                                    "loss_fail": b("loss", futility_alpha, seq.RHO_FAIL)}}
        super().__init__(control, treatments, alpha_time, alpha_loss, target_loss, min_effect, max_runs,
                         futility_alpha, saved=saved)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["variance"] = self.variance.to_dict()
        d["variance_line"] = self.variance.line()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BorrowedPlan":
        try:
            return cls(d["control"], d["treatments"], d["alpha_time"], d["alpha_loss"], d["target_loss"],
                       d["min_effect"], d["max_runs"], d.get("futility_alpha", seq.FUTILITY_ALPHA),
                       variance=VariancePlan.from_dict(d["variance"]), saved=d)
        except (KeyError, TypeError) as e:
            raise seq.UserError(f"saved sequential plan is incomplete ({e}); delete it to recalibrate") from None

    def look(self, records):
        out = super().look(records)
        out.lines.insert(0, self.variance.line())
        return out

    def _time(self, ctimes, ttimes, chosts=None, thosts=None):
        s = self.variance.time
        spans = chosts is not None and thosts is not None and len(set(chosts) | set(thosts)) > 1
        if s is None or spans:   # a borrowed sigma is one node's: across nodes the blocked test decides
            return super()._time(ctimes, ttimes, chosts, thosts)
        M = self.max_runs
        L = max(0, min(len(ctimes), len(ttimes), M) - 1)
        if L == 0:
            return super()._time(ctimes, ttimes)
        c, t = np.asarray(ctimes[:L + 1]), np.asarray(ttimes[:L + 1])
        n = np.arange(2, L + 2)
        diff = np.array([t[:k].mean() - c[:k].mean() for k in n])
        vc = np.array([c[:k].var(ddof=1) for k in n])
        vt = np.array([t[:k].var(ddof=1) for k in n])
        pp, pf, ts = time_p(diff, vc, vt, n, s.value ** 2, s.df, self.variance.level, self.min_effect)
        (k,), (dec,) = seq.first_crossing(pp[None], self.time_pass, pf[None], self.time_fail, M)
        j = k - 2
        f = seq._fmt_p
        d = {"look": int(k), "n": int(k), "diff": float(diff[j]), "t": float(ts[j]), "p": float(pp[j]),
             "boundary": float(self.time_pass[j]), "p_fail": float(pf[j]),
             "fail_boundary": float(self.time_fail[j])}
        stat = (f"pair {k}/{M}: diff {diff[j]:+.4f} s, pooled t (sigma borrowed) {ts[j]:.2f}, "
                f"p {f(pp[j])} (pass if <= {f(self.time_pass[j])}); p not faster by {self.min_effect:g} s "
                f"{f(pf[j])} (fail if <= {f(self.time_fail[j])})")
        at = f"at pair {k} (diff {diff[j]:+.4f} s)"
        return seq._decide(d, dec, stat,
                           passed=f"faster: p {f(pp[j])} <= {f(self.time_pass[j])} {at}",
                           futile=f"not faster by {self.min_effect:g} s: p {f(pf[j])} <= "
                                  f"{f(self.time_fail[j])} {at}",
                           ran_out=f"not shown faster by the last look (pair {M}): "
                                   f"p {f(pp[j])} > {f(self.time_pass[j])}")

    def _loss(self, recs):
        s = self.variance.loss
        M = self.max_runs
        losses = [float(r.val_loss) if seq._finite(r.val_loss) and r.status != "diverged" else math.nan
                  for r in recs]
        L = max(0, min(len(losses), M) - 1)
        if s is None or L == 0:
            return super()._loss(recs)
        # as the plain design: a diverged run fails the loss at its own run unless a pass came
        # first (its NaN poisons every look from it on); the looks before it use this statistic
        bad = next((i for i, x in enumerate(losses) if math.isnan(x)), None)
        x = np.asarray(losses[:L + 1]) - self.target_loss
        n = np.arange(2, L + 2)
        m = np.array([x[:k].mean() for k in n])
        v = np.array([x[:k].var(ddof=1) for k in n])
        with np.errstate(invalid="ignore"):
            pp, pf, ts = loss_p(m, v, n, s.value ** 2, s.df, self.variance.level)
        (k,), (dec,) = seq.first_crossing(pp[None], self.loss_pass, pf[None], self.loss_fail, M)
        if bad is not None and not (dec != 0 and k <= bad):
            return seq.diverged_fail(recs, bad)
        j = k - 2
        f = seq._fmt_p
        mean = m[j] + self.target_loss
        d = {"look": int(k), "n": int(k), "mean": float(mean), "t": float(ts[j]), "p": float(pp[j]),
             "boundary": float(self.loss_pass[j]), "p_fail": float(pf[j]),
             "fail_boundary": float(self.loss_fail[j])}
        name = "z" if s.known else "t (sigma borrowed)"
        stat = (f"run {k}/{M}: mean {mean:.5f} vs {self.target_loss:g}, {name} {ts[j]:.2f}, p below "
                f"{f(pp[j])} (pass if <= {f(self.loss_pass[j])}); p above {f(pf[j])} "
                f"(fail if <= {f(self.loss_fail[j])})")
        at = f"at run {k} (mean {mean:.5f})"
        return seq._decide(d, dec, stat,
                           passed=f"below {self.target_loss:g}: p {f(pp[j])} <= {f(self.loss_pass[j])} {at}",
                           futile=f"above {self.target_loss:g}: p {f(pf[j])} <= {f(self.loss_fail[j])} {at}",
                           ran_out=f"not shown below {self.target_loss:g} by the last look "
                                   f"(run {M}): p {f(pp[j])} > {f(self.loss_pass[j])}")


def plan_from_dict(d: dict):
    """A saved plan: an anytime-valid one, a sweep's, borrowed when it records a variance
    plan, else the plain one."""
    if d.get("design") == "anytime":
        from harness.design.anytime import AnytimePlan
        return AnytimePlan.from_dict(d)
    if d.get("design") == "multi-arm":
        from harness.design.multiarm import MultiArmPlan
        return MultiArmPlan.from_dict(d)
    if d.get("kind") == "sweep":
        from harness.design.sweep_seq import SweepPlan
        try:
            return SweepPlan.from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise seq.UserError(f"saved sweep plan is incomplete ({e}); delete it to start over") from None
    return BorrowedPlan.from_dict(d) if d.get("variance") else seq.SequentialPlan.from_dict(d)
