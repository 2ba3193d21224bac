"""``harness simulate --arms K``: Monte Carlo of the multi-arm ``--until-decisive`` family.

Decisions come from ``multiarm.replay_paths``, the rule ``MultiArmPlan.look`` runs, fed
the events the runner would produce: the interleaved launch order C0 T1_0 .. TK_0 C1 ...,
one job at a time, arms the last look no longer needs skipped (``Runner._launch``).
tests/test_one_accounting.py runs the real ``Runner`` on the same draws and requires the
same run counts and decisions. Beside it (``compare``): K separate two-arm experiments
(``simulate.simulate`` per arm, each with its own control) and a fixed N per arm with Holm.
"""
from __future__ import annotations

import math

import numpy as np

from harness import thresholds as th
from harness.design import multiarm as ma
from harness.design import sequential as seq
from harness.errors import UserError

BLOCK = 20_000
TIME_BASE = 98.0


def per_arm(flag: str, values, K: int) -> list[float]:
    """A value given once for all arms, or one per arm."""
    vals = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(vals) == 1:
        vals = vals * K
    if len(vals) != K:
        raise UserError(f"{flag}: {len(vals)} values for {K} arms; give one for all or one per arm")
    if not all(math.isfinite(v) for v in vals):
        raise UserError(f"{flag} {values!r}: expected finite numbers")
    return vals


def draw(rng, B: int, M: int, time_sigma: float, t_sigmas, deltas, loss_means, loss_sigma: float,
         diverge_prob: float = 0.0) -> dict:
    """B experiments' runs, slot by slot: times in ms (as a log prints them) and in s."""
    K = len(deltas)
    zc = rng.standard_normal((B, M))
    zt = rng.standard_normal((B, K, M))
    zl = rng.standard_normal((B, K, M))
    ctime_ms = (TIME_BASE + time_sigma * zc) * 1000.0
    ttime_ms = (TIME_BASE + np.asarray(deltas)[None, :, None]
                + np.asarray(t_sigmas)[None, :, None] * zt) * 1000.0
    diverged = rng.random((B, K, M)) < diverge_prob
    tloss = np.where(diverged, np.nan, np.asarray(loss_means)[None, :, None] + loss_sigma * zl)
    return {"ctime_ms": ctime_ms, "ttime_ms": ttime_ms, "ctime": ctime_ms / 1000.0,
            "ttime": ttime_ms / 1000.0, "tloss": tloss, "diverged": diverged}


def run_paths(plan: ma.MultiArmPlan, d: dict):
    """The family's decisions and run counts on draws ``d`` (the runner's scheduling)."""
    M = plan.max_runs
    K = len(plan.treatments)
    ct, tt, tl = d["ctime"][:, :M], d["ttime"][:, :, :M], d["tloss"][:, :, :M]
    B = ct.shape[0]
    PT, PFT, PL, PFL = ma.look_ps(ct, tt, tl, plan.min_effect, plan.target_loss)
    yes = np.ones(B, dtype=bool)
    no = np.zeros(B, dtype=bool)

    def events(c, T, L):
        for i in range(M):
            need_c, _ = ma.need(T, L, c, M)
            yield -1, need_c, yes, no
            for j in range(K):
                _, need_t = ma.need(T, L, c, M)
                yield j, need_t[:, j], yes, d["diverged"][:, j, i]

    T, L, c = ma.replay_paths(events, PT, PFT, PL, PFL, plan.BT, plan.FT, plan.BL, plan.FL, M)
    return T, L, c


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def simulate_family(time_sigma: float, time_delta, loss_mean, loss_sigma: float,
                    treatment_time_sigma=None, alpha_time: float = th.ALPHA_TIME,
                    alpha_loss: float = th.ALPHA_LOSS, max_runs: int = th.RUNS,
                    min_effect: float = th.MIN_EFFECT, target_loss: float = th.TARGET_LOSS,
                    arms: int | None = None, sims: int = 10_000, seed: int = 0,
                    futility_alpha: float = seq.FUTILITY_ALPHA, diverge_prob: float = 0.0,
                    compare: bool = False, fixed_runs: int | None = None) -> dict:
    """Operating characteristics of the multi-arm family (K = ``arms`` treatments).

    ``time_delta``, ``loss_mean``, ``treatment_time_sigma``: one value for all arms or a
    list, one per arm. Familywise errors count, per simulated experiment, any arm whose
    claim is false passing it: "faster" when its true delta >= 0, "below" when its true
    mean loss >= the target.
    """
    lists = [v for v in (time_delta, loss_mean, treatment_time_sigma) if isinstance(v, (list, tuple))]
    K = arms if arms is not None else (len(lists[0]) if lists else None)
    if not isinstance(K, int) or K < 2:
        raise UserError(f"--arms {K!r}: expected an integer >= 2 (one control and K treatments)")
    deltas = per_arm("--time-delta", time_delta, K)
    losses = per_arm("--loss-mean", loss_mean, K)
    tsig = per_arm("--treatment-time-sigma", time_sigma if treatment_time_sigma is None else treatment_time_sigma, K)
    for name, v in (("--time-sigma", time_sigma), ("--loss-sigma", loss_sigma), *(
            ("--treatment-time-sigma", s) for s in tsig)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise UserError(f"{name} {v!r}: expected a standard deviation > 0, e.g. 0.09")
    if not isinstance(sims, int) or sims < 1:
        raise UserError(f"--sims {sims!r}: expected a positive integer, e.g. 10000")
    if not (0 <= diverge_prob < 1):
        raise UserError(f"--diverge-prob {diverge_prob!r}: expected a probability in [0, 1)")
    names = [f"H{j + 1}" for j in range(K)]
    plan = ma.MultiArmPlan("H0", names, alpha_time, alpha_loss, target_loss, min_effect, max_runs, futility_alpha)
    M = plan.max_runs
    N = int(fixed_runs or M)
    W = max(M, N)
    null_t = np.array([dl >= 0 for dl in deltas])          # "faster" is false
    null_l = np.array([lm >= target_loss for lm in losses])  # "below the target" is false
    good = [j for j in range(K) if deltas[j] < 0 and losses[j] < target_loss]
    best = min(good, key=lambda j: deltas[j]) if good else None
    rng = np.random.default_rng(seed)
    acc = {k: np.zeros(K) for k in ("runs", "runs2", "tpass", "lpass", "both", "f_t", "f_l", "f_both")}
    acc.update({k: 0.0 for k in ("nc", "nc2", "tot", "tot2", "fwe_t", "fwe_l", "pick", "pick_none",
                                 "f_fwe_t", "f_fwe_l", "f_pick")})
    tots = []
    done = 0
    while done < sims:
        B = min(BLOCK, sims - done)
        done += B
        d = draw(rng, B, W, time_sigma, tsig, deltas, losses, loss_sigma, diverge_prob)
        T, L, c = run_paths(plan, d)
        both = (T.dec == 1) & (L.dec == 1)
        tot = c["nc"] + c["n"].sum(axis=1)
        tots.append(tot)
        acc["runs"] += c["n"].sum(axis=0)
        acc["runs2"] += (c["n"].astype(float) ** 2).sum(axis=0)
        acc["nc"] += c["nc"].sum()
        acc["tot"] += tot.sum()
        acc["tot2"] += (tot.astype(float) ** 2).sum()
        acc["tpass"] += (T.dec == 1).sum(axis=0)
        acc["lpass"] += (L.dec == 1).sum(axis=0)
        acc["both"] += both.sum(axis=0)
        acc["fwe_t"] += ((T.dec == 1) & null_t[None]).any(axis=1).sum()
        acc["fwe_l"] += ((L.dec == 1) & null_l[None]).any(axis=1).sum()
        # the pick: the passing arm with the smallest observed time difference at the end
        ct = d["ctime"][:, :M]
        nc = np.maximum(c["nc"], 1)
        cmean = np.nansum(np.where(np.arange(M)[None] < nc[:, None], ct, 0), axis=1) / nc
        diffs = np.full((B, K), np.inf)
        for j in range(K):
            n = np.maximum(c["n"][:, j], 1)
            tm = np.nansum(np.where(np.arange(M)[None] < n[:, None], d["ttime"][:, j, :M], 0), axis=1) / n
            diffs[:, j] = np.where(both[:, j], tm - cmean, np.inf)
        picked = np.where(both.any(axis=1), diffs.argmin(axis=1), -1)
        acc["pick"] += (picked == (best if best is not None else -1)).sum()
        acc["pick_none"] += (picked == -1).sum()
        if compare:
            f = fixed_holm(d, N, alpha_time, alpha_loss, target_loss)
            acc["f_t"] += f["t"].sum(axis=0)
            acc["f_l"] += f["l"].sum(axis=0)
            acc["f_both"] += (f["t"] & f["l"]).sum(axis=0)
            acc["f_fwe_t"] += (f["t"] & null_t[None]).any(axis=1).sum()
            acc["f_fwe_l"] += (f["l"] & null_l[None]).any(axis=1).sum()
            fpick = np.where((f["t"] & f["l"]).any(axis=1),
                             np.where(f["t"] & f["l"], f["diff"], np.inf).argmin(axis=1), -1)
            acc["f_pick"] += (fpick == (best if best is not None else -1)).sum()
    tot = np.concatenate(tots)
    S = sims
    r = lambda k: (acc[k] / S).tolist() if isinstance(acc[k], np.ndarray) else acc[k] / S  # noqa: E731
    runs = acc["runs"] / S
    runs_se = np.sqrt(np.maximum(acc["runs2"] / S - runs ** 2, 0) / S)
    out = {
        "method": ma.METHOD, "design": ma.DESIGN_KIND, "familywise": True,
        "sims": S, "seed": seed, "arms": K, "max_runs": M, "names": ["H0", *names],
        "alpha_time": float(alpha_time), "alpha_loss": float(alpha_loss), "target_loss": float(target_loss),
        "min_effect": float(min_effect), "futility_alpha": float(futility_alpha),
        "time_sigma": float(time_sigma), "treatment_time_sigma": tsig, "loss_sigma": float(loss_sigma),
        "time_delta": deltas, "loss_mean": losses, "diverge_prob": float(diverge_prob),
        "expected_runs": {"H0": acc["nc"] / S, **{h: float(runs[j]) for j, h in enumerate(names)}},
        "expected_runs_se": {h: float(runs_se[j]) for j, h in enumerate(names)},
        "runs_total": acc["tot"] / S,
        "runs_total_se": math.sqrt(max(acc["tot2"] / S - (acc["tot"] / S) ** 2, 0) / S),
        "p95_runs_total": float(np.percentile(tot, 95)), "max_runs_total": int(tot.max()),
        "power": {h: r("both")[j] for j, h in enumerate(names)},
        "power_se": {h: _se(r("both")[j], S) for j, h in enumerate(names)},
        "time_pass_rate": {h: r("tpass")[j] for j, h in enumerate(names)},
        "loss_pass_rate": {h: r("lpass")[j] for j, h in enumerate(names)},
        "familywise_error_time": r("fwe_t"), "familywise_error_time_se": _se(r("fwe_t"), S),
        "familywise_error_loss": r("fwe_l"), "familywise_error_loss_se": _se(r("fwe_l"), S),
        "truly_best": names[best] if best is not None else None,
        "pick_best_rate": r("pick") if best is not None else None,
        "pick_best_rate_se": _se(r("pick"), S) if best is not None else None,
        "pick_none_rate": r("pick_none"),
    }
    if compare:
        out["fixed_holm"] = {
            "runs_per_arm": N, "runs_total": (K + 1) * N,
            "power": {h: r("f_both")[j] for j, h in enumerate(names)},
            "familywise_error_time": r("f_fwe_t"), "familywise_error_time_se": _se(r("f_fwe_t"), S),
            "familywise_error_loss": r("f_fwe_l"), "familywise_error_loss_se": _se(r("f_fwe_l"), S),
            "pick_best_rate": r("f_pick") if best is not None else None}
        out["separate"] = separate(time_sigma, tsig, deltas, losses, loss_sigma, alpha_time, alpha_loss, M,
                                   min_effect, target_loss, S, seed + 1, futility_alpha, diverge_prob,
                                   null_t, null_l, names)
    return out


def holm(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down on each row of p (B, K): which hypotheses are rejected."""
    B, K = p.shape
    q = np.where(np.isnan(p), np.inf, p)
    order = np.argsort(q, axis=1)
    sp = np.take_along_axis(q, order, axis=1)
    ok = sp <= alpha / (K - np.arange(K))[None]
    keep = np.cumprod(ok, axis=1).astype(bool)
    out = np.zeros((B, K), dtype=bool)
    np.put_along_axis(out, order, keep, axis=1)
    return out


def fixed_holm(d: dict, N: int, alpha_time: float, alpha_loss: float, target_loss: float) -> dict:
    """N runs per arm, one Welch test per arm against the shared control and one loss test
    per arm, Holm over the arms within each family."""
    ct = d["ctime"][:, :N]
    K = d["ttime"].shape[1]
    ref = ct[:, :1]
    c = ct - ref
    pt, pl, diff = (np.empty((ct.shape[0], K)) for _ in range(3))
    for j in range(K):
        t = d["ttime"][:, j, :N] - ref
        vc, vt = c.var(axis=1, ddof=1), t.var(axis=1, ddof=1)
        diff[:, j] = t.mean(axis=1) - c.mean(axis=1)
        pt[:, j] = seq.welch_p(diff[:, j], vc, vt, N)[0]
        x = d["tloss"][:, j, :N] - target_loss
        pl[:, j] = seq.one_sample_p(x.mean(axis=1), x.var(axis=1, ddof=1), N)[0]
    return {"t": holm(pt, alpha_time), "l": holm(pl, alpha_loss), "diff": diff}


def separate(time_sigma, tsig, deltas, losses, loss_sigma, alpha_time, alpha_loss, M, min_effect,
             target_loss, sims, seed, futility_alpha, diverge_prob, null_t, null_l, names) -> dict:
    """K two-arm ``--until-decisive`` experiments, each with its own control, each at its own
    alpha (today's way): runs add up; the family's errors combine independent experiments."""
    from harness.design.simulate import simulate
    rows = [simulate(time_sigma, deltas[j], losses[j], loss_sigma, treatment_time_sigma=tsig[j],
                     alpha_time=alpha_time, alpha_loss=alpha_loss, max_runs=M, min_effect=min_effect,
                     target_loss=target_loss, sims=sims, seed=seed + j, futility_alpha=futility_alpha,
                     diverge_prob=diverge_prob) for j in range(len(deltas))]

    def fwe(rates, se_rates, nulls):
        # P(any null experiment passes) of independent experiments; delta-method SE
        q = [1 - r for r, n in zip(rates, nulls) if n]
        val = 1 - float(np.prod(q)) if q else 0.0
        var = sum((float(np.prod(q)) / (1 - r)) ** 2 * s ** 2 for r, s, n in zip(rates, se_rates, nulls) if n) if q else 0.0
        return val, math.sqrt(var)

    ft, ft_se = fwe([x["reject_rate"] for x in rows], [x["reject_rate_se"] for x in rows], null_t)
    fl, fl_se = fwe([x["loss_pass_rate"] for x in rows], [x["loss_pass_rate_se"] for x in rows], null_l)
    tot = sum(x["mean_total_runs"] for x in rows)
    return {"runs_total": tot, "expected_runs": {h: x["mean_total_runs"] for h, x in zip(names, rows)},
            # each experiment's own control and treatment apart (their costs per run may differ)
            "expected_runs_by_arm": {h: {"control": x["mean_control_runs"], "treatment": x["mean_treatment_runs"]}
                                     for h, x in zip(names, rows)},
            "power": {h: x["both_rate"] for h, x in zip(names, rows)},
            "familywise_error_time": ft, "familywise_error_time_se": ft_se,
            "familywise_error_loss": fl, "familywise_error_loss_se": fl_se}
