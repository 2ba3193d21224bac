#!/usr/bin/env python3
"""Benchmark of step sweeps (harness/analysis/sweep.py, harness/design/sweep_seq.py) against
testing each step count as its own arm.

Steps [1550, 1560, 1575], loss sigma 0.0009, target 3.28, alpha_loss 0.01; the true mean
loss is linear in the step count (within a 25-step range the record's curve is).
Scenarios (true mean loss at 1550 / 1560 / 1575):
  below: 3.2790 / 3.27876 / 3.2784  (untied-VE slope, 0.0006 per 25 steps): 1550 is the answer
  edge:  3.2800 / 3.2796 / 3.2790   (1550 exactly at the target: claiming it is a false verdict)
  above: 3.2806 / 3.2800 / 3.2791   (1550 above, 1560 at the target: claiming either is false)
  flat:  3.2800 / 3.2800 / 3.2800   (every mean on the target: any claim is false)
Per design: "right" = names the true smallest step count below the target (the best answer
there is), "false" = names (decides below) a step count whose true mean is at or above the
target, with Monte Carlo standard errors.

1. Fixed designs, n runs per step count: the sweep's fit (its answer counted down from the
   most steps, as harness/analysis/sweep.py does) against separate one-sample t-tests (the
   smallest passing step count, as one reads a table of separate arms).
2. Sequential (--until-decisive, at most 8 runs per step count):
   - "sweep": the calibrated step-down design of harness/design/sweep_seq.py (the committed
     boundaries), run through its vectorised procedure (the runner's counts:
     tests/test_sweep.py checks them against the real Runner);
   - "bonferroni": the rule it replaces (session 3): least settled step count next, a
     decision when p < alpha / (K^2 M), recomputed at every look;
   - "separate": every step count its own arm with the plain sequential one-sample design
     (harness/design/sequential.py, the loss boundaries of --until-decisive), the smallest
     passing one named.
3. The calibrated boundaries at the calibration's grid of true lines (every mean on the
   target; lines through the target at a step count, slope g sigma over the range):
   false rates on fresh seeds.
Seeds here are not the calibration's (its seed is sequential.CAL_SEED with its own keys).

Usage: python bench/bench_sweep.py [--sims N] [--seq-sims N] [--bonf-sims N]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.analysis import sweep  # noqa: E402
from harness.design import sequential as seq  # noqa: E402
from harness.design import sweep_seq  # noqa: E402

STEPS = np.array([1550, 1560, 1575])
SIGMA, TARGET, ALPHA, M = 0.0009, 3.28, 0.01, 8
SCEN = {"below": [3.2790, 3.27876, 3.2784], "edge": [3.2800, 3.2796, 3.2790], "above": [3.2806, 3.2800, 3.2791],
        "flat": [3.2800, 3.2800, 3.2800]}


def truth(mu):
    below = [i for i, m in enumerate(mu) if m < TARGET]
    return min(below) if below else None


def fixed(mu, n: int, sims: int, seed: int):
    """Vectorised fixed designs: (sweep claims, separate-arm claims), index of smallest or -1."""
    rng = np.random.default_rng(seed)
    K = len(STEPS)
    y = np.asarray(mu)[None, :, None] + SIGMA * rng.standard_normal((sims, K, n))
    # separate arms: one-sample t per step count
    m, s = y.mean(axis=2), y.std(axis=2, ddof=1)
    p_sep = sps.t.cdf((m - TARGET) / (s / math.sqrt(n)), n - 1)
    # sweep: least squares through all K*n runs, pooled residual sigma, df = K*n - 2
    x = np.repeat(STEPS, n).astype(float)
    x0 = x.mean()
    sxx = ((x - x0) ** 2).sum()
    Y = y.reshape(sims, K * n)
    a = Y.mean(axis=1)
    b = ((x - x0)[None, :] * (Y - a[:, None])).sum(axis=1) / sxx
    res = Y - a[:, None] - b[:, None] * (x - x0)[None, :]
    df = K * n - 2
    sig = np.sqrt((res ** 2).sum(axis=1) / df)
    d = STEPS - x0
    pred = a[:, None] + b[:, None] * d[None, :]
    se = sig[:, None] * np.sqrt(1.0 / (K * n) + d[None, :] ** 2 / sxx)
    p_sw = sps.t.cdf((pred - TARGET) / se, df)

    def smallest(p):
        ok = p < ALPHA
        return np.where(ok.any(axis=1), ok.argmax(axis=1), -1)

    def step_down(p):
        """The analysis's answer: the last step count below, counted down from the most steps."""
        ok = p < ALPHA
        top = np.cumprod(ok[:, ::-1], axis=1)[:, ::-1].astype(bool)   # every larger one below too
        return np.where(top.any(axis=1), top.argmax(axis=1), -1)
    return step_down(p_sw), smallest(p_sep)


def rates(claims, mu):
    t = truth(mu)
    right = float((claims == (t if t is not None else -1)).mean())
    false = float(np.isin(claims, [i for i, m in enumerate(mu) if m >= TARGET]).mean())
    return right, false


def calibrated(mu, sims: int, seed: int):
    """The shipped design: (claims, any false below, sweep runs, control runs) per path."""
    plan = sweep_seq.SweepPlan("H0", "H1", [(int(s), f"H1@{s}") for s in STEPS], TARGET, ALPHA, M)
    rng = np.random.default_rng(seed)
    y = np.asarray(mu)[None, :, None] - TARGET + SIGMA * rng.standard_normal((sims, len(STEPS), M))
    res = sweep_seq.run_paths(y, sweep_seq.positions(STEPS), M, plan.below, plan.above)
    below = res["dec"] == 1
    claims = np.where(below.any(axis=1), below.argmax(axis=1), -1)
    false = (below & (np.asarray(mu) >= TARGET)[None, :]).any(axis=1)
    return claims, false, res["n"].sum(axis=1), res["control"]


def bonferroni(mu, sims: int, seed: int):
    """Session 3's rule, per path: least settled next, p < alpha / (K^2 M), not final."""
    rng = np.random.default_rng(seed)
    K = len(STEPS)
    thr = ALPHA / (K * K * M)
    claims, false, runs = [], [], []
    for _ in range(sims):
        ls = {k: [] for k in range(K)}
        while True:
            f = sweep.fit([(int(STEPS[k]), ls[k]) for k in range(K)])
            if f is None:
                need = [k for k in range(K) if len(ls[k]) < 2]
                pick = need[0] if need else None
            else:
                st = {}
                for k in range(K):
                    p = f.p_below(float(STEPS[k]), TARGET)
                    st[k] = ("below" if p < thr else "above" if 1 - p < thr else "open", p)
                below = [k for k in range(K) if st[k][0] == "below"]
                cut = min(below) if below else K
                open_ = [k for k in range(cut) if st[k][0] != "above" and len(ls[k]) < M]
                pick = max(open_, key=lambda k: (min(st[k][1], 1 - st[k][1]), -k)) if open_ else None
            if pick is None:
                break
            ls[pick].append(float(mu[pick] + SIGMA * rng.standard_normal()))
        below = [k for k in range(K) if st[k][0] == "below"]
        claims.append(min(below) if below else -1)
        false.append(any(mu[k] >= TARGET for k in below))
        runs.append(sum(len(v) for v in ls.values()))
    return np.array(claims), np.array(false), np.array(runs)


def separate(mu, sims: int, seed: int):
    """Each step count its own arm, the plain sequential loss design; the smallest passing one."""
    rng = np.random.default_rng(seed)
    K = len(STEPS)
    lp = seq.boundaries("one-sample", ALPHA, M, seq.RHO_PASS)
    lf = seq.boundaries("one-sample", seq.FUTILITY_ALPHA, M, seq.RHO_FAIL)
    n = np.arange(2, M + 1)
    dec, runs = [], np.zeros(sims)
    for k in range(K):
        x = mu[k] - TARGET + SIGMA * rng.standard_normal((sims, M))
        m, v = seq._moments(x)
        pp, pf, _ = seq.one_sample_p(m, v, n)
        kl, dl = seq.first_crossing(pp, lp, pf, lf, M)
        dec.append(dl)
        runs += kl
    dec = np.stack(dec, axis=1)
    below = dec == 1
    claims = np.where(below.any(axis=1), below.argmax(axis=1), -1)
    false = (below & (np.asarray(mu) >= TARGET)[None, :]).any(axis=1)
    return claims, false, runs


def se(p, n):
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=100_000)
    ap.add_argument("--seq-sims", type=int, default=100_000)
    ap.add_argument("--bonf-sims", type=int, default=2000)
    a = ap.parse_args()
    t0 = time.time()
    print(f"== fixed designs: n runs per step count ({len(STEPS)} step counts), {a.sims} sims per row ==")
    print(f"{'scenario':8}{'n':>3}{'runs':>6}{'sweep right':>13}{'false':>9}{'+-se':>8}"
          f"{'separate right':>16}{'false':>9}{'+-se':>8}")
    for j, (name, mu) in enumerate(SCEN.items()):
        for n in (2, 3, 4, 5, 8):
            sw, sep = fixed(mu, n, a.sims, 7100 + 100 * j + n)
            (r1, f1), (r2, f2) = rates(sw, mu), rates(sep, mu)
            print(f"{name:8}{n:>3}{3 * n:>6}{r1:>13.4f}{f1:>9.4f}{se(f1, a.sims):>8.4f}"
                  f"{r2:>16.4f}{f2:>9.4f}{se(f2, a.sims):>8.4f}")
    print()
    print(f"== sequential (--until-decisive, at most {M} runs per step count) ==")
    print(f"{'scenario':8}{'design':>12}{'sims':>8}{'sweep runs':>12}{'control':>9}{'right':>8}{'+-se':>8}"
          f"{'false':>9}{'+-se':>8}")
    for j, (name, mu) in enumerate(SCEN.items()):
        c, fl, r, ctl = calibrated(mu, a.seq_sims, 8100 + j)
        rows = [("sweep", a.seq_sims, c, fl, r, f"{ctl.mean():9.2f}")]
        c, fl, r = bonferroni(mu, a.bonf_sims, 8200 + j)
        rows.append(("bonferroni", a.bonf_sims, c, fl, r, f"{'':9}"))
        c, fl, r = separate(mu, a.seq_sims, 8300 + j)
        rows.append(("separate", a.seq_sims, c, fl, r, f"{'':9}"))
        for design, ns, c, fl, r, ctl_txt in rows:
            right = float((c == (truth(mu) if truth(mu) is not None else -1)).mean())
            f = float(fl.mean())
            print(f"{name:8}{design:>12}{ns:>8}{r.mean():>12.2f}{ctl_txt}{right:>8.4f}{se(right, ns):>8.4f}"
                  f"{f:>9.4f}{se(f, ns):>8.4f}")
    print()
    plan = sweep_seq.SweepPlan("H0", "H1", [(int(s), f"H1@{s}") for s in STEPS], TARGET, ALPHA, M)
    xs = sweep_seq.positions(STEPS)
    print(f"== calibrated boundaries at the calibration's grid of true lines, {a.seq_sims} sims per row ==")
    print(f"{'line (g sigma over the range, through the target at)':>54}{'false':>9}{'+-se':>8}{'/alpha':>8}")
    rng = np.random.default_rng(8400)
    for g, c in sweep_seq.configs(xs):
        dl = g * (xs - c)
        z = rng.standard_normal((a.seq_sims, len(STEPS), M))
        res = sweep_seq.run_paths(z + dl[None, :, None], xs, M, plan.below, plan.above)
        f = float(((res["dec"] == 1) & (dl >= 0)[None, :]).any(axis=1).mean())
        where = "every mean on the target" if g == 0 else f"g {g:+g}, {int(STEPS[0] + c * (STEPS[-1] - STEPS[0]))} steps"
        print(f"{where:>54}{f:>9.5f}{se(f, a.seq_sims):>8.5f}{f / ALPHA:>8.2f}")
    print(f"\nboundaries b(N), N = {sweep_seq.START * len(STEPS)}..{len(STEPS) * M}: "
          + " ".join(f"{b:.2g}" for b in plan.below))
    print(f"(total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
