"""Statistics of the significance table and the checks beside it.

Pure functions on lists of floats; results are dataclasses and warnings are data
(never printed). Nothing here reads files.

The tests are written out in plain Python (Student t via the regularised incomplete
beta function) instead of calling ``scipy.stats``: importing scipy.stats alone takes
about 0.8 s, most of the 1 s budget of ``python analyze.py``. tests/test_stats.py
checks every one against scipy.stats (relative 1e-9).
"""
from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from functools import lru_cache
from dataclasses import dataclass, field

from harness import thresholds as th
from harness.caveat import Caveat
from harness.formats import fmt_p

NAN = math.nan
# Robust checks beside the table. Each is a test with a stated false-alarm rate, so
# that a warning means something at the small n of speedrun records (n = 5..20):
OUTLIER_ALPHA = 0.01     # Bonferroni outlier test per group and figure (time, loss); on
                         # clean normal data it fires on <= 1% of them at any n
                         # (bench/bench_outliers.py measures it)
OUTLIER_MIN_RUNS = 4     # the leave-one-out t needs >= 2 degrees of freedom
DRIFT_ALPHA = 0.01       # Spearman test of time against run order, two-sided
DRIFT_MIN_RUNS = 5       # fewer runs say nothing about a trend
SPEARMAN_EXACT_MAX = 8  # up to this many runs the drift p is exact (every permutation, 8! = 40320)
LARGE = 1e100            # |values| above this give no test: their squares and sums of squares
                         # (and those of their differences) would overflow a double


# ---------------------------------------------------------------- distributions

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def betainc(a: float, b: float, x: float, y: float | None = None) -> float:
    """Regularised incomplete beta I_x(a, b); ``y`` = 1 - x when known more exactly."""
    if y is None:
        y = 1.0 - x
    if math.isnan(x) or math.isnan(a) or math.isnan(b):
        return NAN
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    lbt = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
           + a * math.log(x) + b * math.log(y))
    # the fraction converges fast only on one side of the mode: use the symmetry otherwise
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, y) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (not necessarily integer) degrees of freedom."""
    if math.isnan(t) or math.isnan(df) or df <= 0:
        return NAN
    if math.isinf(t):
        return 0.0 if t < 0 else 1.0
    t2 = t * t
    # both x and 1 - x from their own formula: near t = 0, 1 - x would cancel to nothing
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))
    return tail if t < 0 else 1.0 - tail


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t (bisection on t_cdf; only plots need it)."""
    if not 0 < q < 1 or math.isnan(df) or df <= 0:
        return NAN
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > q:
        lo *= 2
    while t_cdf(hi, df) < q:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def mean_ci(xs: list[float], level: float = 0.95) -> tuple[float, float]:
    """t interval of the mean; nan below 2 values."""
    n = len(xs)
    if n < 2 or not _finite(xs):
        return (NAN, NAN)
    half = t_ppf(0.5 + level / 2, n - 1) * std(xs) / math.sqrt(n)
    m = mean(xs)
    return (m - half, m + half)


def norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# ---------------------------------------------------------------- descriptive

def mean(xs: list[float]) -> float:
    if not xs:
        return NAN
    if all(abs(x) <= LARGE for x in xs):
        return math.fsum(xs) / len(xs)
    return math.fsum(x / len(xs) for x in xs)   # absurd figures: a sum of them could overflow


def tied(xs: list[float]) -> bool:
    """Every value the same (max == min): a sample without spread at its resolution.

    Decided on the values, not on a computed standard deviation: the floating-point mean
    of identical values can be one unit in the last place off, which leaves a standard
    deviation of 1e-16 and a t statistic of 1e13 instead of no test.
    """
    return bool(xs) and all(math.isfinite(x) for x in xs) and max(xs) == min(xs)


def sum_sq(xs: list[float]) -> float:
    """Sum of squared deviations from the mean; exactly 0 for tied values, never an overflow."""
    if len(xs) < 2 or tied(xs):
        return 0.0
    m = mean(xs)
    if _finite(xs):
        return math.fsum((x - m) ** 2 for x in xs)
    scale = max(abs(x - m) for x in xs)
    if not math.isfinite(scale):
        return scale if not math.isnan(scale) else NAN
    # scaled, so that deviations of 1e200 give inf rather than an OverflowError
    return scale * scale * math.fsum(((x - m) / scale) ** 2 for x in xs)


def std(xs: list[float]) -> float:
    """Sample standard deviation (ddof = 1); nan below 2 values, 0 for tied values."""
    if len(xs) < 2:
        return NAN
    ss = sum_sq(xs)
    if math.isinf(ss):
        m = mean(xs)   # the square overflowed: the same figure without squaring it
        scale = max(abs(x - m) for x in xs)
        return scale * math.sqrt(math.fsum(((x - m) / scale) ** 2 for x in xs) / (len(xs) - 1))
    return math.sqrt(ss / (len(xs) - 1))


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return NAN
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _finite(xs: list[float]) -> bool:
    """Values a test can use: finite and small enough that no square or sum of them overflows."""
    return all(math.isfinite(x) and abs(x) <= LARGE for x in xs)


usable = _finite


# ---------------------------------------------------------------- tests

def welch_less(a: list[float], b: list[float]) -> float:
    """One-sided Welch t-test p that mean(a) < mean(b).

    Equals ``scipy.stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue``.
    """
    na, nb = len(a), len(b)
    if na < 2 or nb < 2 or not (_finite(a) and _finite(b)):
        return NAN
    if tied(a) or tied(b):
        # a sample without spread (tied, rounded values) has no variance estimate: no
        # test, never p = 0, and never a p from the other sample's spread alone
        return NAN
    va, vb = sum_sq(a) / (na - 1) / na, sum_sq(b) / (nb - 1) / nb
    se2 = va + vb
    diff = mean(a) - mean(b)
    df = se2 * se2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    return t_cdf(diff / math.sqrt(se2), df)


def ttest_1samp_less(xs: list[float], mu: float) -> float:
    """One-sided one-sample t-test p that mean(xs) < mu.

    Equals ``scipy.stats.ttest_1samp(xs, mu, alternative="less").pvalue``.
    """
    n = len(xs)
    if n < 2 or not _finite(xs):
        return NAN
    if tied(xs):
        return NAN              # tied values: no test, never p = 0
    s = std(xs)
    diff = mean(xs) - mu
    return t_cdf(diff / (s / math.sqrt(n)), n - 1)


def _ranks(xs: list[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the sizes of the groups of tied values."""
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def _mwu_counts(n1: int, n2: int) -> list[int]:
    """Number of arrangements giving each U = 0..n1*n2 (Gaussian binomial coefficients)."""
    # prod_{i=1..n1} (1 - q^(n2+i)) / (1 - q^i), in exact integers
    size = n1 * n2 + 1
    poly = [0] * size
    poly[0] = 1
    for i in range(1, n1 + 1):
        k = n2 + i
        for u in range(size - 1, k - 1, -1):   # multiply by (1 - q^k)
            poly[u] -= poly[u - k]
        for u in range(i, size):                # divide by (1 - q^i)
            poly[u] += poly[u - i]
    return poly


def mannwhitney_less(a: list[float], b: list[float]) -> float:
    """One-sided Mann-Whitney U p that values of ``a`` tend to be smaller than ``b``.

    Same choice of method as ``scipy.stats.mannwhitneyu(a, b, alternative="less")``:
    exact distribution when a sample has at most 8 values and there are no ties,
    else the normal approximation with tie and continuity corrections.
    """
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0 or not (_finite(a) and _finite(b)):
        return NAN
    ranks, ties = _ranks(list(a) + list(b))
    u1 = math.fsum(ranks[:n1]) - n1 * (n1 + 1) / 2.0
    u2 = n1 * n2 - u1          # large U2 means a is small
    has_ties = any(t > 1 for t in ties)
    if (n1 <= 8 or n2 <= 8) and not has_ties:
        counts = _mwu_counts(n1, n2)
        k = int(round(u2))
        return min(1.0, sum(counts[k:]) / sum(counts))
    n = n1 + n2
    tie_term = sum(t ** 3 - t for t in ties)
    s = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    if s == 0.0:
        return NAN
    z = (u2 - n1 * n2 / 2.0 - 0.5) / s
    return min(1.0, max(0.0, norm_sf(z)))


def welch_diff_ci(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float]:
    """Welch t interval of mean(a) - mean(b); nan where Welch's test has no result.

    Replaces the percentile bootstrap, which covered 0.92 at 10 + 10 runs (it ignores
    the t quantile and the n - 1 of the variances); bench/bench_interval.py measures both.
    """
    na, nb = len(a), len(b)
    if na < 2 or nb < 2 or not (_finite(a) and _finite(b)) or tied(a) or tied(b):
        return (NAN, NAN)
    va, vb = sum_sq(a) / (na - 1) / na, sum_sq(b) / (nb - 1) / nb
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    half = t_ppf(0.5 + level / 2, df) * math.sqrt(va + vb)
    d = mean(a) - mean(b)
    return (d - half, d + half)


def spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    """Spearman rank correlation and its two-sided p.

    Exact (the share of the n! orderings of y whose |rho| reaches the observed one) up to
    ``SPEARMAN_EXACT_MAX`` values; above, the t approximation (as scipy), except at
    |rho| = 1, where the t statistic is infinite and the exact p is known: with x untied,
    the orderings of y that keep it monotone number prod(tie group sizes of y)! per side.
    """
    n = len(x)
    if n < 3 or len(y) != n:
        return (NAN, NAN)
    rx, _ = _ranks(list(x))
    ry, ties_y = _ranks(list(y))
    mx, my = mean(rx), mean(ry)
    sxy = math.fsum((u - mx) * (v - my) for u, v in zip(rx, ry))
    sxx = math.fsum((u - mx) ** 2 for u in rx)
    syy = math.fsum((v - my) ** 2 for v in ry)
    if sxx == 0 or syy == 0:
        return (NAN, NAN)
    rho = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    if n <= SPEARMAN_EXACT_MAX:
        return (rho, _spearman_exact(tuple(u - mx for u in rx), tuple(sorted(v - my for v in ry)), abs(sxy)))
    if abs(rho) == 1.0:
        keep = math.prod(math.factorial(t) for t in ties_y)
        return (rho, min(1.0, 2.0 * keep / math.factorial(n)))
    t = rho * math.sqrt((n - 2) / (1.0 - rho * rho))
    return (rho, 2.0 * t_cdf(-abs(t), n - 2))


def _spearman_exact(dx: tuple[float, ...], dy: tuple[float, ...], s_obs: float) -> float:
    """Share of the orderings of ``dy`` with |sum dx_i dy_pi(i)| >= s_obs (centred ranks)."""
    null = _spearman_null(dx, dy)
    tol = 1e-9 * (s_obs + 1.0)      # ranks are halves: the sums are exact up to round-off
    return (len(null) - bisect.bisect_left(null, s_obs - tol)) / len(null)


@lru_cache(maxsize=64)
def _spearman_null(dx: tuple[float, ...], dy: tuple[float, ...]) -> list[float]:
    """|sum dx_i dy_pi(i)| over every ordering pi, sorted (once per tie pattern and n)."""
    return sorted(abs(math.fsum(u * v for u, v in zip(dx, perm))) for perm in itertools.permutations(dy))


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y on x."""
    if len(x) < 2:
        return NAN
    mx, my = mean(x), mean(y)
    sxx = math.fsum((u - mx) ** 2 for u in x)
    return NAN if sxx == 0 else math.fsum((u - mx) * (v - my) for u, v in zip(x, y)) / sxx


@dataclass
class Outlier:
    index: int          # into the values given
    t: float            # leave-one-out studentized distance from the other values' mean
    p: float            # two-sided, Bonferroni-adjusted over the values (capped at 1)
    others_mean: float


def outliers(xs: list[float], alpha: float = OUTLIER_ALPHA) -> list[Outlier]:
    """Values that lie too far from the others for normal data (Bonferroni outlier test).

    For each value, t = (x_i - mean of the others) / (sd of the others * sqrt(1 + 1/(n-1)))
    follows Student's t with n - 2 degrees of freedom when all n values come from one
    normal distribution; the two-sided p times n (Bonferroni) bounds the chance that a
    clean group shows any flag by ``alpha``, at every n. A rule of k MADs does not: the
    MAD of 5 to 10 runs is so small and noisy that 5 MADs flagged most real records.
    Values equal to all others at the figures' resolution (sd of the others 0) are not
    scaled, hence not flagged.
    """
    vals = [(i, x) for i, x in enumerate(xs) if _finite([x])]
    n = len(vals)
    if n < OUTLIER_MIN_RUNS:
        return []
    m_all = mean([x for _, x in vals])
    ss_all = math.fsum((x - m_all) ** 2 for _, x in vals)
    out = []
    for i, x in vals:
        # the others' mean and sum of squares, without a pass per value
        m = (n * m_all - x) / (n - 1)
        ss = max(0.0, ss_all - (x - m_all) ** 2 * n / (n - 1))
        sd = math.sqrt(ss / (n - 2))
        if not sd > 1e-6 * math.sqrt(ss_all / (n - 1)):
            continue     # the others are all equal (round-off left): nothing to scale by
        t = (x - m) / (sd * math.sqrt(1.0 + 1.0 / (n - 1)))
        p = min(1.0, n * 2.0 * t_cdf(-abs(t), n - 2))
        if p < alpha:
            out.append(Outlier(i, t, p, m))
    return out


def holm(ps: list[float]) -> list[float]:
    """Holm step-down adjusted p-values; nan stays nan and counts in the family."""
    m = len(ps)
    order = sorted((i for i in range(m) if not math.isnan(ps[i])), key=ps.__getitem__)
    out = [NAN] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


# ---------------------------------------------------------------- the table

@dataclass
class Arm:
    """One hypothesis's data: one entry per run with a final result, in run order."""

    name: str
    losses: list[float]
    times: list[float]
    steps: list[int] = field(default_factory=list)   # final step of each run
    order: list[float] | None = None                 # launch order of each run, if known
    expected_steps: int | None = None                # shown when there is no run
    sources: list[str] | None = None                 # the log of each run, named in warnings
    loss_control: bool = False                       # Loss +/- of every arm is against this one
    split_hint: str = ""                             # how to split mixed final steps


@dataclass
class Row:
    """One line of the table plus the checks beside it."""

    name: str
    runs: int
    steps: int | None
    time_mean: float
    time_std: float
    time_delta: float
    time_p: float
    loss_mean: float
    loss_std: float
    loss_delta: float
    loss_p: float
    is_control: bool = False
    time_p_mw: float = NAN                          # Mann-Whitney, one-sided
    time_delta_ci: tuple[float, float] = (NAN, NAN)  # Welch t 95% interval of the difference
    time_p_holm: float = NAN                        # when several treatments
    time_p_slower: float = NAN                      # Welch, the other side
    time_verdict: str = "~"                         # faster | slower | ~ | control
    loss_verdict: str = "~"                         # below | above | ~ | diverged
    drift_rho: float = NAN
    drift_p: float = NAN
    drift_slope: float = NAN                        # seconds per run
    is_loss_control: bool = False                   # the baseline of Loss +/-


@dataclass
class Summary:
    control: str
    target_loss: float
    alpha_time: float
    alpha_loss: float
    rows: list[Row]
    warnings: list[Caveat]
    variance_line: str = ""          # what sigma the tests borrow or know (borrow.VariancePlan)

    @property
    def treatments(self) -> list[Row]:
        return [r for r in self.rows if not r.is_control]

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    @property
    def loss_control(self) -> str:
        """The group Loss +/- is measured against: the control unless another was marked."""
        return next((r.name for r in self.rows if r.is_loss_control), self.control)


def _mode_steps(steps: list[int]) -> int | None:
    if not steps:
        return None
    counts = Counter(steps).most_common()
    best = counts[0][1]
    return max(s for s, c in counts if c == best)   # ties: the larger step count


def summarise(arms: list[Arm], control: str, target_loss: float = th.TARGET_LOSS,
              alpha_time: float = th.ALPHA_TIME, alpha_loss: float = th.ALPHA_LOSS,
              variance=None) -> Summary:
    """The significance table: the control first, then the others in the given order.

    ``variance`` (a ``borrow.VariancePlan``) replaces the loss and time p-values by
    their borrowed- or known-sigma versions, arm by arm where the consistency check allows.
    """
    ctrl = next(a for a in arms if a.name == control)
    ordered = [ctrl] + [a for a in arms if a is not ctrl]
    # Loss +/- against the arm marked loss_control (some records use another baseline)
    l_ctrl = next((a for a in arms if a.loss_control), ctrl)
    c_tm, c_lm = mean(ctrl.times), mean(l_ctrl.losses)
    rows: list[Row] = []
    warnings: list[Caveat] = []
    for arm in ordered:
        is_ctrl = arm is ctrl
        t_mean, l_mean = mean(arm.times), mean(arm.losses)
        row = Row(
            name=arm.name, runs=len(arm.times),
            steps=_mode_steps(arm.steps) if arm.steps else arm.expected_steps,
            time_mean=t_mean, time_std=std(arm.times),
            time_delta=0.0 if is_ctrl else t_mean - c_tm,
            time_p=NAN if is_ctrl else welch_less(arm.times, ctrl.times),
            loss_mean=l_mean, loss_std=std(arm.losses),
            loss_delta=0.0 if arm is l_ctrl else l_mean - c_lm,
            loss_p=ttest_1samp_less(arm.losses, target_loss),
            is_control=is_ctrl,
            is_loss_control=arm is l_ctrl,
        )
        over = None
        if variance is not None:
            from harness.analysis import borrow  # imported here: borrow builds on this module
            over = borrow.arm_tests(arm.name, arm.losses, arm.times, ctrl.name, ctrl.times,
                                    target_loss, variance, is_ctrl)
            row.loss_p = _first(over.loss_below, row.loss_p)
            row.time_p = _first(over.time_faster, row.time_p)
            for note in over.notes:     # the control's refusal comes once, not once per treatment
                if all(w.message != note.message for w in warnings):
                    warnings.append(note)
        if not is_ctrl:
            row.time_p_mw = mannwhitney_less(arm.times, ctrl.times)
            row.time_delta_ci = welch_diff_ci(arm.times, ctrl.times)
            row.time_p_slower = _first(over and over.time_slower, welch_less(ctrl.times, arm.times))
            row.time_verdict = ("faster" if row.time_p < alpha_time else
                                "slower" if row.time_p_slower < alpha_time else "~")
        else:
            row.time_verdict = "control"
        if any(math.isnan(x) or math.isinf(x) for x in arm.losses):
            row.loss_verdict = "diverged"
        elif row.loss_p < alpha_loss:
            row.loss_verdict = "below"
        elif _first(over and over.loss_above,
                    ttest_1samp_less([-x for x in arm.losses], -target_loss)) < alpha_loss:
            row.loss_verdict = "above"
        rows.append(row)
        warnings += _arm_warnings(arm, row)
    treatments = [r for r in rows if not r.is_control]
    if len(treatments) > 1:
        for r, p in zip(treatments, holm([r.time_p for r in treatments])):
            r.time_p_holm = p
    return Summary(control=ctrl.name, target_loss=target_loss, alpha_time=alpha_time,
                   alpha_loss=alpha_loss, rows=rows, warnings=warnings,
                   variance_line=variance.line() if variance is not None else "")


def _first(x, default):
    """``x`` unless it is None (the plan left that p-value alone)."""
    return default if x is None else x


def _arm_warnings(arm: Arm, row: Row) -> list[Caveat]:
    out: list[Caveat] = []
    counts = Counter(arm.steps)
    if len(counts) > 1:
        parts = ", ".join(f"{s} ({c} run{'s' if c > 1 else ''})"
                          for s, c in sorted(counts.items(), reverse=True))
        out.append(Caveat("steps", arm.name,
                               f"{arm.name} mixes final steps: {parts}; Steps shows the most common"
                               + (f"; {arm.split_hint}" if arm.split_hint else "")))
    for what, xs, unit in (("time", arm.times, " s"), ("loss", arm.losses, "")):
        huge = [x for x in xs if math.isfinite(x) and abs(x) > LARGE]
        if huge:
            out.append(Caveat(
                "absurd", arm.name,
                f"absurd figure: {arm.name} {what} {huge[0]:.4g}{unit} is beyond {LARGE:g}, so no test "
                f"uses {arm.name}'s {what}s; read that run's log (a broken timer or a corrupt line)"))
        for o in outliers(xs):
            who = arm.sources[o.index] if arm.sources and o.index < len(arm.sources) else None
            run = f"run {o.index + 1}" + (f" ({who})" if who else "")
            out.append(Caveat(
                "outlier", arm.name,
                f"outlier: {arm.name} {run} {what} {xs[o.index]:.4f}{unit} lies {abs(o.t):.1f} sd from "
                f"the other {len(xs) - 1} runs' mean {o.others_mean:.4f}{unit} (Bonferroni outlier "
                f"test p {o.p:.2g} < {OUTLIER_ALPHA:g}): read that log for a slow or failing node or "
                f"other jobs on the machine; keep the run unless its machine was at fault "
                f"(dropping runs biases the test), and rerun it if it was", run=o.index))
    if arm.order is not None and len(arm.times) >= DRIFT_MIN_RUNS and _finite(arm.times):
        rho, p = spearman(arm.order, arm.times)
        rank = [float(i) for i in _ranks(list(arm.order))[0]]
        row.drift_rho, row.drift_p, row.drift_slope = rho, p, slope(rank, arm.times)
        # stated only when significant: a trend at p = 0.19 is no evidence of a change
        if not math.isnan(p) and p < DRIFT_ALPHA:
            way = "rises" if rho > 0 else "falls"
            out.append(Caveat(
                "drift", arm.name,
                f"drift: {arm.name} time {way} with run order (Spearman rho {rho:+.2f}, two-sided "
                f"p {fmt_p(p)} < {DRIFT_ALPHA:g}, {row.drift_slope:+.4f} s per run): the machine "
                f"changed during the experiment; compare the runs' hosts and start times, and "
                f"rerun with order = \"interleaved\" so that both arms see the same drift"))
    return out
