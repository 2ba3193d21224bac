"""``--until-decisive`` for a step sweep: step-down tests with calibrated sequential boundaries.

The question: the smallest swept step count whose true mean loss is below the target
(the "minimum effective dose" of dose finding). The model is the sweep's
(harness/analysis/sweep.py): one least-squares line through every run of the sweep with
a pooled residual sigma (or a borrowed / known one).

The procedure (the decider's ``look`` after every completed run, and ``run_paths``, the
same procedure vectorised for the calibration, ``harness simulate`` and the benchmark;
tests/test_sweep.py checks that they agree run for run with the real Runner):

* Start: ``START`` runs at every step count, round robin from the fewest steps (a first
  fit with 2K - 2 residual df).
* Step-down (fixed-sequence) tests: the step counts are tested one at a time from the
  most steps down; the one under test is the largest not yet decided, and only once
  every larger one is decided "below" (Hsu & Berger 1999, JASA 94:468-482: stepwise
  tests for the minimum effective dose; a false "below" can only be made at the first
  step count of the sequence that is truly at or above the target, so no split of alpha
  over the K step counts is needed).
* Looks: after every run, at N = the sweep runs in the fit. The step count under test
  is decided "below" when its one-sided p (predicted mean below the target) is <= b(N)
  (the test then moves down, at the same look), or "above" when the p of the opposite
  claim is <= a(N): then every smaller step count is taken to be above too, and the
  answer is settled. Decisions are final (journaled in sequential.json, like the plain
  design's).
* Next run: at the step count under test (its prediction is what is uncertain); the
  control runs first whenever it has fewer runs than the busiest sweep arm (the time
  column).
* Stop: when the test has moved below the fewest steps, or stopped at "above", or the
  step count under test has ``max_runs`` runs.

Boundaries: b(N) = lambda * ((N - N0 + 1) / (K M - N0 + 1)) ** RHO_BELOW for N = N0..K M,
N0 = START K. lambda is calibrated by Monte Carlo of this whole procedure (fit, looks,
step-down, allocation, stopping) so that the probability of any false "below" (a step
count decided below whose true mean is at or above the target) is ``seq.target(alpha)``
x alpha_loss at the least favourable configuration of a grid (``configs``). Pivotal
form: every decision depends on the data through t statistics of the fit, unchanged
when the losses minus the target are scaled (sigma drops out) and when the step
counts are mapped affinely (only their relative spacing enters: the calibration's
key). The one nuisance left is the true line in sigma units; the grid holds every
mean on the target and lines through the target at each step count but the largest
with slopes of 1 to 8 sigma over the range (the worst is a slope of about 1.5-3 sigma:
the larger step counts pass early enough to leave the one on the target many looks).
``a(N)`` = ``FUTILITY`` x (N - N0 + 1) / (K M - N0 + 1), not calibrated: a false
"above" only costs power (bench/bench_sweep.py measures it).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math

import numpy as np

from harness import thresholds as th
from harness.design import progress, sequential as seq
from harness.design.sequential import Look
from harness.errors import UserError

METHOD = ("step sweep: one least-squares line with a pooled residual sigma; step-down tests from the most "
          "steps (Hsu & Berger 1999), a look after every run, boundaries calibrated by Monte Carlo of the "
          "whole procedure at the least favourable of a grid of true lines")
CAL_VERSION = 1           # bump when the procedure or its calibration changes
START = 2                 # runs per step count before the first look
RHO_BELOW = 1.0           # shape of the "below" boundaries over the looks
FUTILITY = 0.1            # "above": nominal level at the last look, linear in the looks
PACKAGED = seq.PACKAGED / "sweep"      # committed calibrations of the shipped sweep plans
# the shipped plans (scripts/write_calibrations.py sweep): (step counts, alpha_loss, max_runs).
# Only the relative spacing of the step counts matters: [16, 18, 20] is [1550, 1560, 1570].
SHIPPED = (((16, 18, 20), th.ALPHA_LOSS, 3), ((16, 18, 20), th.ALPHA_LOSS, 4), ((16, 18, 20), th.ALPHA_LOSS, 5),
           ((16, 18, 20), th.ALPHA_LOSS, 10), ((1550, 1560, 1575), th.ALPHA_LOSS, 8))
# least favourable configuration search: the true mean - target, in sigma units, at the
# relative step position u in [0, 1] is g * (u - u_k), a line through the target at swept
# step count k (its mean exactly on the target: the edge of the null there). g = 0: every
# mean on the target. g < 0: the loss falls with the steps, as it does, so the step counts
# above k are truly below and the test reaches k, the first false claim it can make.
SLOPES = (-1.0, -1.5, -2.0, -3.0, -4.0, -8.0)


def configs(xs) -> list[tuple[float, float]]:
    """(g, crossing position) of the grid searched for the least favourable configuration."""
    return [(0.0, 0.0)] + [(g, float(c)) for c in xs[:-1] for g in SLOPES]


def positions(steps) -> np.ndarray:
    """The step counts mapped affinely to [0, 1] (the fit is the same on either scale)."""
    x = np.asarray(sorted(steps), dtype=float)
    return (x - x[0]) / (x[-1] - x[0])


def shape(K: int, M: int, rho: float) -> np.ndarray:
    """f(N) for N = N0..K M (index 0 is N0 = START K)."""
    n0 = START * K
    L = K * M - n0 + 1
    return (np.arange(1, L + 1) / L) ** rho


# --------------------------------------------------------------------------- the procedure, vectorised
def _tstats(n, s1, s2, xs, mode: str, sb2=None, df_b=None, level=None):
    """(t, df): every arm's t of the predicted mean against 0, and the df per path.

    n, s1, s2: (paths, K) run counts, sums and sums of squares of (loss - target);
    mode "sample" (residual sigma), "known" (sigma 1: the values are in sigma units;
    df inf) or "borrowed" (``sb2`` per path with ``df_b`` df, pooled unless the
    residuals spread more at ``level``). p below = F_df(t): one df for all arms of a
    path, so comparisons of p are comparisons of t, and no t CDF is needed per arm.
    """
    from scipy import special
    N = n.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xbar = (n * xs).sum(axis=1) / N
        dx = xs[None, :] - xbar[:, None]
        sxx = (n * dx * dx).sum(axis=1)
        ybar = s1.sum(axis=1) / N
        sxy = (dx * s1).sum(axis=1)
        b = sxy / sxx
        rss = np.maximum(s2.sum(axis=1) - N * ybar * ybar - b * sxy, 0.0)
        df = N - 2.0
        var = rss / df
        if mode == "borrowed":
            ok = special.fdtrc(df, df_b, var / sb2) >= level
            var = np.where(ok, (rss + df_b * sb2) / (df + df_b), var)
            df = np.where(ok, df + df_b, df)
        elif mode == "known":
            var, df = np.ones_like(var), np.full_like(var, np.inf)
        pred = ybar[:, None] + b[:, None] * dx
        se = np.sqrt(var[:, None] * (1.0 / N[:, None] + dx * dx / sxx[:, None]))
        t = np.where(se > 0, pred / se, np.nan)
    return t, df


def _crit(df: np.ndarray, p: float) -> np.ndarray:
    """The t with F_df(t) = p, per path (few distinct df: one quantile each)."""
    from scipy import special
    u, inv = np.unique(df, return_inverse=True)
    q = np.array([special.ndtri(p) if math.isinf(d) else special.stdtrit(d, p) for d in u])
    return q[inv.reshape(-1)]


def run_paths(y: np.ndarray, xs: np.ndarray, max_runs: int, below: np.ndarray, above: np.ndarray,
              mode: str = "sample", sb2=None, df_b=None, level=None) -> dict:
    """The procedure on many simulated sweeps at once (one job at a time, as the runner).

    y: (paths, K, M) loss - target of run j at step count k (the j-th run of that arm);
    below, above: b(N), a(N) for N = N0..K M. Returns per path the runs per arm ``n``,
    the decisions ``dec`` (1 below, -1 above, 0 open), the look ``at`` (N) of each,
    and the control's runs ``control``.
    """
    S, K, M = y.shape
    n0 = START * K
    n = np.full((S, K), START, dtype=np.int64)
    s1 = y[:, :, :START].sum(axis=2)
    s2 = (y[:, :, :START] ** 2).sum(axis=2)
    dec = np.zeros((S, K), dtype=np.int8)
    at = np.zeros((S, K), dtype=np.int64)
    control = np.full(S, START, dtype=np.int64)
    front = np.full(S, K - 1, dtype=np.int64)     # the step count under test (step-down from the top)
    live = np.ones(S, dtype=bool)
    sb2v = None if sb2 is None else np.asarray(sb2, dtype=float).reshape(-1)
    for N in range(n0, K * M + 1):
        rows = np.nonzero(live)[0]
        if rows.size == 0:
            break
        t, df = _tstats(n[rows], s1[rows], s2[rows], xs, mode, None if sb2v is None else sb2v[rows], df_b, level)
        j = N - n0
        tb, ta = _crit(df, below[j]), _crit(df, above[j])
        fr = front[rows]
        ended = np.zeros(rows.size, dtype=bool)
        for _ in range(K):                           # "below" moves the test down, at this same look
            test = (fr >= 0) & ~ended
            tf = t[np.arange(rows.size), np.maximum(fr, 0)]
            is_b = test & (tf <= tb)                 # p below <= b(N)
            is_a = test & ~is_b & (-tf <= ta)        # p above <= a(N): the answer is settled
            hit = is_b | is_a
            dec[rows[hit], fr[hit]] = np.where(is_b[hit], 1, -1)
            at[rows[hit], fr[hit]] = N
            ended |= is_a
            fr = fr - is_b
            if not is_b.any():
                break
        front[rows] = fr
        stop = ended | (fr < 0) | (n[rows, np.maximum(fr, 0)] >= M)
        live[rows[stop]] = False
        go = rows[~stop]
        if go.size == 0:
            break
        control[go] = n[go].max(axis=1)              # the control catches up first
        pick = front[go]
        k = n[go, pick]
        v = y[go, pick, k]
        n[go, pick] += 1
        s1[go, pick] += v
        s2[go, pick] += v * v
    return {"n": n, "dec": dec, "at": at, "control": control, "runs": n.sum(axis=1) + control}


def run_paths_parallel(y: np.ndarray, xs: np.ndarray, max_runs: int, below: np.ndarray, above: np.ndarray,
                       max_parallel: int) -> dict:
    """``run_paths`` with ``max_parallel`` jobs at once, as the runner schedules them.

    The decider asks for one arm at a time; the runner then launches up to
    ``max_parallel`` of that arm's slots together, and (the in-memory backend) they end
    together, in start order, with a look after each: decisions are made at every one
    of those looks, the next arm is chosen by the last. Sample sigma only.
    """
    S, K, M = y.shape
    P = int(max_parallel)
    n0 = START * K
    n = np.zeros((S, K), dtype=np.int64)
    s1 = np.zeros((S, K))
    s2 = np.zeros((S, K))
    dec = np.zeros((S, K), dtype=np.int8)
    at = np.zeros((S, K), dtype=np.int64)
    control = np.zeros(S, dtype=np.int64)
    front = np.full(S, K - 1, dtype=np.int64)
    ended = np.zeros(S, dtype=bool)               # an "above" settled the answer

    def look(rows):
        """Decisions at the current runs of these paths (the step-down cascade)."""
        started = (n[rows] >= START).all(axis=1)
        N = n[rows].sum(axis=1)
        j = N - n0
        ok = started & (j >= 0) & (j < below.size) & ~ended[rows]
        rows = rows[ok]
        if rows.size == 0:
            return
        j = j[ok]
        t, df = _tstats(n[rows], s1[rows], s2[rows], xs, "sample")
        from scipy import special
        tb = special.stdtrit(df, below[j])
        ta = special.stdtrit(df, above[j])
        fr = front[rows]
        for _ in range(K):
            test = (fr >= 0) & ~ended[rows]
            tf = t[np.arange(rows.size), np.maximum(fr, 0)]
            is_b = test & (tf <= tb)
            is_a = test & ~is_b & (-tf <= ta)
            hit = is_b | is_a
            dec[rows[hit], fr[hit]] = np.where(is_b[hit], 1, -1)
            at[rows[hit], fr[hit]] = N[ok][hit]
            ended[rows[is_a]] = True
            fr = fr - is_b
            if not is_b.any():
                break
        front[rows] = fr

    live = np.ones(S, dtype=bool)
    while live.any():
        rows = np.nonzero(live)[0]
        # the arm the last look needs: -1 the control, K none (done)
        started = (n[rows] >= START).all(axis=1)
        fewest = np.argmin(n[rows] * (K + 1) + np.arange(K)[None, :], axis=1)    # ties: fewer steps
        fr = front[rows]
        pick = np.where(started, np.where(~ended[rows] & (fr >= 0) & (n[rows, np.maximum(fr, 0)] < M), fr, K),
                        fewest)
        lag = (pick < K) & (control[rows] < n[rows].max(axis=1))
        arm = np.where(lag, -1, pick)
        stop = arm == K
        live[rows[stop]] = False
        rows, arm = rows[~stop], arm[~stop]
        if rows.size == 0:
            break
        have = np.where(arm < 0, control[rows], n[rows, np.maximum(arm, 0)])
        L = np.minimum(P, M - have)
        for k in range(P):
            go = k < L
            gr, ga = rows[go], arm[go]
            c = ga < 0
            control[gr[c]] += 1
            sr, sa = gr[~c], ga[~c]
            v = y[sr, sa, n[sr, sa]]
            n[sr, sa] += 1
            s1[sr, sa] += v
            s2[sr, sa] += v * v
            look(gr)
    return {"n": n, "dec": dec, "at": at, "control": control, "runs": n.sum(axis=1) + control}


# --------------------------------------------------------------------------- calibration
def calibration_paths(alpha: float) -> int:
    """Simulated sweeps per calibration: the plain design's, at most 2^18 (a whole sweep
    per path costs K M looks; 2^18 gives about 2500 false verdicts at alpha 0.01)."""
    return min(seq.calibration_paths(alpha), 1 << 18)


def _false(res: dict, delta: np.ndarray) -> np.ndarray:
    """Per path: a step count decided below whose true mean (delta) is at or above the target."""
    return ((res["dec"] == 1) & (delta[None, :] >= 0)).any(axis=1)


def _draws(K: int, M: int, paths: int, key: list, df_b):
    ss = np.random.SeedSequence([seq.CAL_SEED, CAL_VERSION, K, M, paths, *key])
    rng = np.random.Generator(np.random.PCG64(ss))
    z = rng.standard_normal((paths, K, M))
    sb2 = None if df_b is None else rng.chisquare(df_b, paths) / df_b
    return z, sb2


SCREEN_PATHS = 1 << 16    # stage 1: every configuration of the grid, fewer paths
FINALISTS = 4             # stage 2: the worst ones, at the full count
SCREEN_AT = 0.6           # stage 1 ranks the configurations at lambda = SCREEN_AT x alpha


def _rates(z, sb2, xs, M, lam, f, a, mode, df_b, level, deltas) -> list[float]:
    return [float(_false(run_paths(z + dl[None, :, None], xs, M, lam * f, a, mode, sb2, df_b, level),
                         dl).mean()) for dl in deltas]


def calibrate(xs: np.ndarray, alpha: float, max_runs: int, mode: str = "sample", df_b=None, level=None,
              paths: int | None = None, seed_key=(0,), rho: float | None = None) -> dict:
    """lambda such that the worst configuration's false-below rate is target x alpha.

    Stage 1 screens every configuration of ``configs(xs)`` at lambda = SCREEN_AT alpha on
    SCREEN_PATHS paths; stage 2 calibrates on the FINALISTS worst with the full path
    count: common random numbers for every lambda (the rate is then a step function
    of lambda), regula falsi on log rate against log lambda (Illinois). Last, every
    configuration is re-checked at the lambda found (``error_by_config``).
    """
    K, M = len(xs), max_runs
    paths = paths or calibration_paths(alpha)
    aim = alpha * seq.target(alpha)
    f = shape(K, M, RHO_BELOW if rho is None else rho)
    a = FUTILITY * shape(K, M, 1.0)
    grid = configs(xs)
    deltas = [g * (xs - c) for g, c in grid]
    zs, sbs = _draws(K, M, min(SCREEN_PATHS, paths), [*seed_key, 1], df_b if mode == "borrowed" else None)
    screen = _rates(zs, sbs, xs, M, SCREEN_AT * alpha, f, a, mode, df_b, level, deltas)
    top = sorted(range(len(grid)), key=lambda i: -screen[i])[:FINALISTS]
    z, sb2 = _draws(K, M, paths, list(seed_key), df_b if mode == "borrowed" else None)
    steps = [1]          # screen done; then at most 14 evaluations of the worst rate and the checks
    label = f"calibrating sweep boundaries ({K} step counts, M {M})"
    progress.report(label, 1, 17)

    def worst(lam: float) -> float:
        steps[0] += 1
        progress.report(label, steps[0], 17)
        return max(_rates(z, sb2, xs, M, lam, f, a, mode, df_b, level, [deltas[i] for i in top]))

    lo, hi = math.log(alpha / (K * K * M)), math.log(4 * alpha)
    e_lo, e_hi = worst(math.exp(lo)), worst(math.exp(hi))
    best = lo
    if e_hi <= aim:
        best = hi
    else:
        side = 0
        for _ in range(12):
            if e_lo <= 0:
                x = 0.5 * (lo + hi)
            else:                                    # interpolate log rate linearly in log lambda
                x = lo + (math.log(aim) - math.log(e_lo)) * (hi - lo) / (math.log(e_hi) - math.log(e_lo))
                x = min(max(x, lo + 0.02 * (hi - lo)), hi - 0.02 * (hi - lo))
            e = worst(math.exp(x))
            if e <= aim:
                lo, e_lo, best = x, e, x
                if side == -1:
                    e_hi = aim + 0.5 * (e_hi - aim)
                side = -1
                if e >= aim * 0.995:
                    break
            else:
                hi, e_hi = x, e
                if side == 1:
                    e_lo = aim - 0.5 * (aim - e_lo)
                side = 1
            if hi - lo < 5e-4:                       # log lambda to 0.05 %
                break
    lam = math.exp(best)
    final = _rates(z, sb2, xs, M, lam, f, a, mode, df_b, level, [deltas[i] for i in top])
    check = _rates(zs, sbs, xs, M, lam, f, a, mode, df_b, level, deltas)
    return {"scale": lam, "below": (lam * f).tolist(), "above": a.tolist(), "error": max(final),
            "worst": [f"{grid[i][0]:g}@{grid[i][1]:.4g}" for i in top],
            "error_by_config": {f"{g:g}@{c:.4g}": e for (g, c), e in zip(grid, check)},
            "screen_paths": int(zs.shape[0])}


def _key(xs, alpha, max_runs, mode, df_b, level) -> dict:
    return {"version": CAL_VERSION, "base": seq.CAL_VERSION, "kind": "sweep", "alpha": repr(float(alpha)),
            "max_runs": int(max_runs), "positions": [round(float(v), 6) for v in xs], "start": START,
            "rho": RHO_BELOW, "futility": FUTILITY, "mode": mode,
            "df_b": None if df_b is None else repr(float(df_b)), "level": None if level is None else repr(float(level)),
            "paths": calibration_paths(alpha), "seed": seq.CAL_SEED, "target": seq.target(float(alpha)),
            "slopes": list(SLOPES), "screen": [SCREEN_PATHS, FINALISTS, SCREEN_AT]}


def file_name(key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"sweep-a{float(key['alpha']):g}-K{len(key['positions'])}-M{key['max_runs']}-{key['mode']}-{digest}.json"


def _stored(key: dict) -> dict | None:
    """The committed or cached calibration of this key, if there is one."""
    return seq.read_calibration(PACKAGED, file_name(key), key)


def _args(steps, alpha, max_runs, sigma, level) -> tuple:
    xs = tuple(round(float(v), 6) for v in positions(steps))
    if sigma is None:
        return xs, float(alpha), int(max_runs), "sample", None, None
    if sigma.known:
        return xs, float(alpha), int(max_runs), "known", None, None
    return xs, float(alpha), int(max_runs), "borrowed", float(sigma.df), float(level if level is not None else 0.05)


def stored(steps, alpha: float, max_runs: int, sigma=None, level: float | None = None) -> bool:
    """Whether this plan's boundaries are committed or cached (no calibration to wait for)."""
    seq._check_alpha("alpha_loss", alpha)
    seq._check_max_runs(max_runs)
    xs, *rest = _args(steps, alpha, max_runs, sigma, level)
    return _stored(_key(np.array(xs), *rest)) is not None


@functools.lru_cache(maxsize=64)
def _calibration(xs: tuple, alpha: float, max_runs: int, mode: str, df_b, level) -> dict:
    key = _key(np.array(xs), alpha, max_runs, mode, df_b, level)
    data = _stored(key)
    if data is None:
        data = {"key": key, **calibrate(np.array(xs), alpha, max_runs, mode, df_b, level)}
        seq.cache_calibration(file_name(key), data)
    return data


def calibration(steps, alpha: float, max_runs: int, sigma=None, level: float | None = None) -> dict:
    """The calibration record of a sweep plan (committed, cached, or computed once)."""
    seq._check_alpha("alpha_loss", alpha)
    seq._check_max_runs(max_runs)
    return _calibration(*_args(steps, alpha, max_runs, sigma, level))


# --------------------------------------------------------------------------- the decider
class SweepPlan:
    """The stopping and allocation rule of ``--until-decisive`` for a step sweep.

    ``look(records)`` takes the completed runs of every arm and returns a ``Look``:
    ``need`` has at most one arm (the runner launches its next slot), decisions once
    made are kept in ``journal`` (stored in sequential.json by the runner).
    """

    revisit = True          # the runner keeps skipped slots: an arm may be needed again

    def __init__(self, control: str, base: str, arms: list[tuple[int, str]], target_loss: float,
                 alpha_loss: float, max_runs: int, sigma=None, level: float | None = None,
                 saved: dict | None = None) -> None:
        self.control, self.base, self.arms = control, base, sorted((int(s), str(n)) for s, n in arms)
        if len(self.arms) < 2:
            raise UserError(f"sweep {base}: --until-decisive needs 2 or more step counts")
        self.target, self.alpha, self.max_runs = float(target_loss), float(alpha_loss), int(max_runs)
        self.sigma, self.level = sigma, level
        if saved is not None and saved.get("boundaries"):
            self.below = np.array(saved["boundaries"]["below"], dtype=float)
            self.above = np.array(saved["boundaries"]["above"], dtype=float)
            L = len(self.arms) * (self.max_runs - START) + 1
            if self.below.shape != (L,) or self.above.shape != (L,):
                raise UserError(f"saved sweep plan: {self.below.size} boundaries, expected {L}; "
                                f"restore sequential.json from a copy")
        else:
            cal = calibration([s for s, _ in self.arms], self.alpha, self.max_runs, sigma, level)
            self.below, self.above = np.array(cal["below"]), np.array(cal["above"])
        self.journal: list[dict] = [dict(e) for e in (saved or {}).get("decisions") or []]
        for e in self.journal:
            if not ({"hypothesis", "decision", "look"} <= set(e) and e["decision"] in ("below", "above")):
                raise UserError(f"saved sweep plan: decision {e!r} is incomplete; restore sequential.json "
                                f"from a copy")

    def to_dict(self) -> dict:
        return {"kind": "sweep", "method": METHOD, "version": CAL_VERSION, "control": self.control,
                "base": self.base, "arms": [[s, n] for s, n in self.arms], "target_loss": self.target,
                "alpha_loss": self.alpha, "max_runs": self.max_runs, "start": START,
                "sigma": None if self.sigma is None else self.sigma.to_dict(), "level": self.level,
                "boundaries": {"below": list(map(float, self.below)), "above": list(map(float, self.above))},
                "decisions": [dict(e) for e in self.journal]}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepPlan":
        from harness.analysis.borrow import Sigma
        return cls(d["control"], d["base"], [(int(s), str(n)) for s, n in d["arms"]], d["target_loss"],
                   d["alpha_loss"], d["max_runs"], Sigma.from_dict(d["sigma"]) if d.get("sigma") else None,
                   d.get("level"), saved=d)

    def look(self, records: dict[str, list]) -> Look:
        from harness.analysis import sweep
        K, M = len(self.arms), self.max_runs
        recs = {n: [r for r in seq._sort(records.get(n, []) or []) if r.status in ("ok", "diverged")]
                for _, n in self.arms + [(0, self.control)]}
        counts = {n: len(v) for n, v in recs.items()}
        losses = {n: [float(r.val_loss) if seq._finite(r.val_loss) and r.status != "diverged" else math.nan
                      for r in recs[n]] for _, n in self.arms}
        state = {n: "open" for _, n in self.arms}
        for e in self.journal:
            state[e["hypothesis"]] = e["decision"]
        started = all(counts[n] >= min(START, M) for _, n in self.arms)
        f = sweep.fit([(s, losses[n]) for s, n in self.arms], self.sigma, self.level) if started else None
        N = f.n if f is not None else 0
        j = N - START * K
        ps = {}
        if f is not None:
            for s, n in self.arms:
                p = f.p_below(s, self.target)
                ps[n] = (p, 1.0 - p if math.isfinite(p) else math.nan)
        new: list[dict] = []

        def front():
            """The step count under test: the largest one not decided, if every larger one is below."""
            for s, n in reversed(self.arms):
                if state[n] == "below":
                    continue
                return (s, n) if state[n] == "open" else None
            return None
        if f is not None and 0 <= j < len(self.below):
            while (fr := front()) is not None:      # a "below" moves the test down, at this same look
                s, n = fr
                p, q = ps[n]
                word = "below" if p <= self.below[j] else "above" if q <= self.above[j] else None
                if word is None:
                    break
                e = {"hypothesis": n, "decision": word, "look": N, "runs": counts[n],
                     "p": p if word == "below" else q,
                     "boundary": float(self.below[j] if word == "below" else self.above[j]),
                     "fit": f.predict(s)[0]}
                self.journal.append(e)
                new.append(e)
                state[n] = word
                if word == "above":
                    break
        made = {e["hypothesis"]: e for e in self.journal}
        need = {n: False for _, n in self.arms}
        need[self.control] = False
        fr = front()
        if not started:
            pick = min(self.arms, key=lambda sn: (counts[sn[1]], sn[0]))[1]
        elif fr is not None and counts[fr[1]] < M:
            pick = fr[1]
        else:
            pick = None
        if pick is not None:
            busiest = max(counts[n] for _, n in self.arms)
            if counts[self.control] < min(busiest, M):
                need[self.control] = True        # the control catches up first (the time column)
            else:
                need[pick] = True
        lines = []
        for s, n in self.arms:
            p, q = ps.get(n, (math.nan, math.nan))
            fit_txt = f"fit {f.predict(s)[0]:.5f}, " if f is not None else ""
            lines.append(f"{n}: {counts[n]} runs, {fit_txt}p below {seq._fmt_p(p)}, p above {seq._fmt_p(q)}"
                         f" -> {state[n]}" + (f" (at look {made[n]['look']})" if n in made else ""))
        done = pick is None
        below = [s for s, n in self.arms if state[n] == "below"]
        if done:
            if below and fr is None:
                reason = f"stop: {self.base}@{min(below)} is the smallest step count below {self.target:g}"
            elif fr is None:
                reason = f"stop: no swept step count is below {self.target:g}"
            else:
                reason = f"stop: {M} runs reached with {fr[1]} undecided"
        else:
            who = [n for n, v in need.items() if v]
            reason = "continue: " + ", ".join(f"{n} ({counts[n]}/{M})" for n in who)
            if f is not None and 0 <= j < len(self.below):
                reason += (f"; look {N}: {fr[1]} below if p <= {seq._fmt_p(self.below[j])}, "
                           f"above if p <= {seq._fmt_p(self.above[j])}")
        lines.append(reason)
        decisions = {}
        for s, n in self.arms:
            p, q = ps.get(n, (math.nan, math.nan))
            st = state[n]
            e = made.get(n)
            why = (f"{st} {self.target:g} at look {e['look']} (p {seq._fmt_p(e['p'])} <= "
                   f"{seq._fmt_p(e['boundary'])})" if e is not None else f"not decided ({reason})")
            decisions[n] = {"loss": {"decision": {"below": "pass", "above": "fail"}.get(st, "open"),
                                     "sweep": st, "why": why, "p_below": p, "p_above": q}}
        return Look(need=need, done=done, decisions=decisions, lines=lines, reason=reason, new=new)
