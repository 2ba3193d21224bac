"""``harness plan``: runs per arm for the fixed design, and what the sequential design costs.

Fixed design: the smallest n per arm whose power reaches ``--power`` for each
criterion, at the table's own tests: Welch's one-sided t for time (noncentral t
with the Welch-Satterthwaite df at the true sigmas) and the one-sample one-sided t
for loss (exact noncentral t). The design's n is the larger of the two.

Sequential design (``harness run --until-decisive --max-runs M``, M = the fixed n
unless ``--max-runs`` says otherwise): expected runs per arm and power, by Monte
Carlo of the procedure (``harness simulate``).

Inputs: a results folder (sigmas, delta and loss estimated from its runs with
status ok or diverged; each treatment against the control) or the flags.

A pilot's sigma is itself a noisy estimate (from 4 runs it is too small by a factor
of 1.6 or more one time in ten), so the plan uses its one-sided upper confidence
bound at level ``UCB_LEVEL`` from the chi-square law of the sample variance,
sigma_U = s * sqrt((n - 1) / chi2_{1 - level}(n - 1)), and shows power and runs at
1x, 1.5x and 2x the sigma used. The promise covers the sigmas' uncertainty, not the
effect's: the delta and the mean loss are the pilot's estimates (or the flags').
"""
from __future__ import annotations

import math

from harness.design import sequential as seq

MAX_N = 1000
UCB_LEVEL = 0.96                # one-sided upper confidence level for a pilot's sigma: the promised
                                # power holds at the true sigmas in >= 95% of pilots of 4 and 10 runs
                                # (bench/bench_plan_pilot.py: 0.958-0.960 where the loss sets n;
                                # at 0.9, 0.895-0.899; at 0.95, 0.944-0.946)
SENSITIVITY = (1.0, 1.5, 2.0)    # sigma multiples the plan shows power and runs at


def sigma_ucb(s: float, n: int, level: float = UCB_LEVEL) -> float:
    """One-sided upper confidence bound for sigma from a sample sd s of n values (chi-square)."""
    from scipy import stats
    return s * math.sqrt((n - 1) / stats.chi2.ppf(1.0 - level, n - 1))


def time_power(n: int, sigma_c: float, sigma_t: float, delta: float, alpha: float) -> float:
    """Power of the fixed Welch test (treatment faster) with n runs per arm."""
    from scipy import stats
    if n < 2:
        return 0.0
    a, b = sigma_c ** 2 / n, sigma_t ** 2 / n
    se = math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (n - 1) + b * b / (n - 1))
    crit = stats.t.ppf(1.0 - alpha, df)
    return float(stats.nct.sf(crit, df, -delta / se))


def loss_power(n: int, mean: float, sigma: float, target: float, alpha: float) -> float:
    """Power of the fixed one-sample t test (mean below target) with n runs."""
    from scipy import stats
    if n < 2:
        return 0.0
    crit = stats.t.ppf(1.0 - alpha, n - 1)
    return float(stats.nct.sf(crit, n - 1, (target - mean) / (sigma / math.sqrt(n))))


def runs_needed(power_fn, power: float) -> int | None:
    """Smallest n in 2..MAX_N with power_fn(n) >= power (None if none)."""
    if power_fn(MAX_N) < power:
        return None
    lo, hi = 2, MAX_N
    if power_fn(lo) >= power:
        return lo
    while hi - lo > 1:                      # power grows with n
        mid = (lo + hi) // 2
        if power_fn(mid) >= power:
            hi = mid
        else:
            lo = mid
    return hi



def _pick_max_runs(max_runs: int | None, n_fixed: int | None, alpha_time: float,
                   alpha_loss: float) -> tuple[int, str]:
    """M of the sequential design and why: the one asked for, else the smallest M at or above
    the fixed n whose boundaries are committed or cached (no calibration: seconds), else the
    fixed n itself (its boundaries are calibrated first: minutes, with a progress bar)."""
    if max_runs:
        return max_runs, "as asked"
    want = max(2, min(n_fixed or 10, seq.MAX_LOOKS))
    ready = [m for m in seq.calibrated_max_runs(alpha_time, alpha_loss) if m >= want]
    if ready:
        how = "the fixed n" if n_fixed else "10"
        return ready[0], (f"the smallest M >= {how} ({want}) with committed or cached boundaries"
                          if ready[0] != want else "the fixed n (boundaries committed or cached)")
    return want, "the fixed n (no committed or cached boundaries at or above it: calibrated now)"


def plan_one(sc: dict, alpha_time: float, alpha_loss: float, target: float, power: float,
             min_effect: float, max_runs: int | None, sims: int, seed: int) -> dict:
    from harness.design.simulate import simulate
    sc_t = sc.get("treatment_time_sigma") or sc["time_sigma"]
    n_time = None
    if sc["time_delta"] < 0:
        n_time = runs_needed(lambda n: time_power(n, sc["time_sigma"], sc_t, sc["time_delta"], alpha_time), power)
    n_loss = None
    if sc["loss_mean"] < target:
        n_loss = runs_needed(lambda n: loss_power(n, sc["loss_mean"], sc["loss_sigma"], target, alpha_loss), power)
    n_fixed = max(n_time, n_loss) if n_time is not None and n_loss is not None else None
    M, m_note = _pick_max_runs(max_runs, n_fixed, alpha_time, alpha_loss)
    r = simulate(sc["time_sigma"], sc["time_delta"], sc["loss_mean"], sc["loss_sigma"],
                 treatment_time_sigma=sc_t, alpha_time=alpha_time, alpha_loss=alpha_loss, max_runs=M,
                 min_effect=min_effect, target_loss=target, sims=sims, seed=seed)
    sens = []
    for f in SENSITIVITY:            # the same plan (M, boundaries) if the sigmas are f times larger
        rf = r if f == 1.0 else simulate(
            sc["time_sigma"] * f, sc["time_delta"], sc["loss_mean"], sc["loss_sigma"] * f,
            treatment_time_sigma=sc_t * f, alpha_time=alpha_time, alpha_loss=alpha_loss, max_runs=M,
            min_effect=min_effect, target_loss=target, sims=sims, seed=seed + 1)
        sens.append({"sigma_factor": f,
                     "fixed_power_both": (time_power(n_fixed, sc["time_sigma"] * f, sc_t * f, sc["time_delta"],
                                                     alpha_time)
                                          * loss_power(n_fixed, sc["loss_mean"], sc["loss_sigma"] * f, target,
                                                       alpha_loss)) if n_fixed else None,
                     "power_time": rf["reject_rate"], "power_loss": rf["loss_pass_rate"],
                     "power_both": rf["both_rate"], "mean_total_runs": rf["mean_total_runs"]})
    return {**sc, "treatment_time_sigma": sc_t, "runs_time": n_time, "runs_loss": n_loss,
            "sensitivity": sens,
            "runs_fixed": n_fixed,
            "fixed_power_time": time_power(n_fixed, sc["time_sigma"], sc_t, sc["time_delta"], alpha_time)
            if n_fixed else None,
            "fixed_power_loss": loss_power(n_fixed, sc["loss_mean"], sc["loss_sigma"], target, alpha_loss)
            if n_fixed else None,
            "sequential": {"max_runs": M, "max_runs_note": m_note, "sims": sims, "mean_control_runs": r["mean_control_runs"],
                           "mean_treatment_runs": r["mean_treatment_runs"],
                           "mean_total_runs": r["mean_total_runs"], "p95_total_runs": r["p95_total_runs"],
                           "power_time": r["reject_rate"], "power_loss": r["loss_pass_rate"],
                           "power_both": r["both_rate"]}}
