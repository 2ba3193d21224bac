"""``harness simulate``: Monte Carlo of the ``--until-decisive`` procedure.

Each simulated experiment draws normal run times for the control and one treatment
and normal losses for the treatment, decides with the boundaries and rule of
``harness.design.sequential.SequentialPlan`` (its ``look()``, vectorised over experiments)
and counts runs with an emulation of the runner's own scheduling (``schedule``:
launch order, ``max_parallel`` jobs, retries, diverged runs, lost causes stopped).
tests/test_one_accounting.py runs the real ``Runner`` on the same draws and requires
identical run counts and verdicts. Beside it: the fixed design (M runs per arm, one
test at the end) and the naive peeker (a fixed-sample test after every pair).
"""
from __future__ import annotations

import math

import numpy as np

from harness.design import progress, sequential as seq
from harness import thresholds as th
from harness.errors import UserError

BLOCK = 50_000


def draw(rng, B: int, M: int, time_sigma: float, treatment_time_sigma: float, time_delta: float,
         loss_mean: float, loss_sigma: float, fail_prob: float = 0.0, diverge_prob: float = 0.0,
         retries: int = 2, time_base: float = 98.0, noise=None, time_drift: float = 0.0,
         outlier_prob: float = 0.0, outlier_s: float = 1.0) -> dict:
    """What B experiments' runs would produce, slot by slot (launch-order index 0..M-1).

    Times are in milliseconds as a log prints them and then in seconds as the parser
    reads them, so a real runner fed the same values decides identically. ``noise``
    (rng, shape) -> standard draws (default normal); ``time_drift`` seconds added per
    launch slot (the machine warming up, both arms alike); ``outlier_prob``: a run is
    ``outlier_s`` slower (either arm).
    """
    noise = noise or (lambda g, shape: g.standard_normal(shape))
    zc, zt, zl = noise(rng, (B, M)), noise(rng, (B, M)), noise(rng, (B, M))
    slot = np.arange(M)
    ctime = time_base + time_sigma * zc + time_drift * 2 * slot
    ttime = time_base + time_delta + treatment_time_sigma * zt + time_drift * (2 * slot + 1)
    if outlier_prob:
        ctime = ctime + outlier_s * (rng.random((B, M)) < outlier_prob)
        ttime = ttime + outlier_s * (rng.random((B, M)) < outlier_prob)
    ctime_ms = ctime * 1000.0
    ttime_ms = ttime * 1000.0
    diverged = rng.random((B, M)) < diverge_prob
    tloss = np.where(diverged, np.nan, loss_mean + loss_sigma * zl)
    fails_c = rng.random((B, M, retries + 1)) < fail_prob       # attempt a of slot i fails
    fails_t = rng.random((B, M, retries + 1)) < fail_prob

    def first_ok(f):
        ok = ~f.all(axis=2)
        return ok, np.where(ok, f.argmin(axis=2) + 1, retries + 1)

    ok_c, att_c = first_ok(fails_c)
    ok_t, att_t = first_ok(fails_t)
    return {"ctime_ms": ctime_ms, "ttime_ms": ttime_ms, "ctime": ctime_ms / 1000.0 - time_base,
            "ttime": ttime_ms / 1000.0 - time_base, "tloss": tloss, "diverged": diverged,
            "fails_c": fails_c, "fails_t": fails_t, "ok_c": ok_c, "ok_t": ok_t, "att_c": att_c, "att_t": att_t}


def decision_looks(plan, ctimes, ttimes, tloss, diverged=None, borrowed=None):
    """Per path, the look that decides each criterion and how (vectorised ``look()``).

    Inputs are (paths, M) arrays of the arms' completed runs in launch order (NaN
    where a path has fewer). Returns (kt, dt, kl, dl): the time criterion is decided
    dt (1 pass, -1 fail) once both arms have kt runs, the loss criterion dl once the
    treatment has kl runs (never, when the count is not reached). A plan with a
    variance plan (``borrow_seq.BorrowedPlan``) decides on its statistics; ``borrowed``:
    {"time": sigma, "loss": sigma} per path ((paths, 1) arrays), the borrowed sigmas each
    simulated experiment drew (default the plan's own).
    """
    M = plan.max_runs
    n = np.arange(2, M + 1)
    if getattr(plan, "variance", None) is not None:
        pt, pft, pl, pfl = borrowed_p(plan, ctimes, ttimes, tloss, borrowed)
        kt, dt = seq.first_crossing(pt, plan.time_pass, pft, plan.time_fail, M)
        kl, dl = seq.first_crossing(pl, plan.loss_pass, pfl, plan.loss_fail, M)
        return (kt, dt, *_diverged_fails(kl, dl, diverged, M))
    if getattr(plan, "time_test", "welch") == "trimmed":
        pt, pft, _ = seq.yuen_looks(ctimes, ttimes, plan.min_effect)
    else:
        mc, vc = seq._moments(ctimes)
        mt, vt = seq._moments(ttimes)
        pt, pft, _ = seq.welch_p(mt - mc, vc, vt, n, plan.min_effect)
    kt, dt = seq.first_crossing(pt, plan.time_pass, pft, plan.time_fail, M)
    ml, vl = seq._moments(tloss - plan.target_loss)
    pl, pfl, _ = seq.one_sample_p(ml, vl, n)
    kl, dl = seq.first_crossing(pl, plan.loss_pass, pfl, plan.loss_fail, M)
    return (kt, dt, *_diverged_fails(kl, dl, diverged, M))


def _diverged_fails(kl, dl, diverged, M):
    """As look(): a diverged run fails the loss at its own run unless a pass came first."""
    if diverged is None:
        return kl, dl
    has = diverged.any(axis=1)
    bad = np.where(has, diverged.argmax(axis=1), M + 1)
    flip = has & ~((dl != 0) & (kl <= bad))
    return np.where(flip, bad + 1, kl), np.where(flip, -1, dl)


def borrowed_p(plan, ctimes, ttimes, tloss, borrowed=None):
    """(p faster, p not faster, p below, p above) at every look of a ``BorrowedPlan``: its
    pooled statistics where it borrows (check included), the plain ones where it does not."""
    from harness.design import borrow_seq
    M, v = plan.max_runs, plan.variance
    n = np.arange(2, M + 1)
    borrowed = borrowed or {}
    mc, vc = seq._moments(ctimes)
    mt, vt = seq._moments(ttimes)
    if v.time is None:
        pt, pft, _ = seq.welch_p(mt - mc, vc, vt, n, plan.min_effect)
    else:
        s = borrowed.get("time", v.time.value)
        pt, pft, _ = borrow_seq.time_p(mt - mc, vc, vt, n, np.square(s), v.time.df, v.level, plan.min_effect)
    ml, vl = seq._moments(tloss - plan.target_loss)
    if v.loss is None:
        pl, pfl, _ = seq.one_sample_p(ml, vl, n)
    else:
        s = borrowed.get("loss", v.loss.value)
        pl, pfl, _ = borrow_seq.loss_p(ml, vl, n, np.square(s), v.loss.df, v.level)
    return pt, pft, pl, pfl


def _compact(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Each row's values where ok, moved to the front in order; NaN after."""
    order = np.argsort(~ok, axis=1, kind="stable")
    out = np.take_along_axis(np.where(ok, x, np.nan), order, axis=1)
    return out


def schedule(plan, kt, dt, kl, dl, ok_c, ok_t, attempts_c, attempts_t, max_parallel=1):
    """The runner's scheduling of ``--until-decisive`` (interleaved order, one treatment).

    Mirrors ``Runner._run`` with a backend whose attempts started together end
    together in start order (``backends.memory``): fill up to ``max_parallel`` jobs
    from the launch order C0 T0 C1 T1 ..., skipping arms the last look does not need,
    then complete them and look. ok_*: (paths, M) whether slot i ever completes (False
    when every attempt failed); attempts_*: attempts slot i takes. With
    ``max_parallel`` 1 a failed attempt is retried at once, as the runner does.
    Returns completed runs (nc, nt), attempts launched, and the decisions at the end.
    """
    M = plan.max_runs
    S = kt.shape[0]
    ptr = np.zeros(S, dtype=np.int64)
    nc = np.zeros(S, dtype=np.int64)
    nt = np.zeros(S, dtype=np.int64)
    att = np.zeros(S, dtype=np.int64)
    fin = np.zeros(S, dtype=bool)
    ok = np.stack([ok_c, ok_t])
    attempts = np.stack([attempts_c, attempts_t])
    r = np.arange(S)

    def state(nc, nt):
        td = np.where(np.minimum(nc, nt) >= kt, dt, 0)
        ld = np.where(nt >= kl, dl, 0)
        lost = (td == -1) | (ld == -1)
        need_t = ~lost & ((td == 0) | (ld == 0)) & (nt < M)
        need_c = ~lost & (td == 0) & (nc < M)
        return td, ld, need_c, need_t

    while not fin.all():
        _, _, need_c, need_t = state(nc, nt)
        fin |= ~need_c & ~need_t
        started = np.zeros(S, dtype=bool)
        add_c = np.zeros(S, dtype=np.int64)
        add_t = np.zeros(S, dtype=np.int64)
        for _ in range(max_parallel):
            for _ in range(2):                 # skipped keys: at most one before a needed arm
                arm = ptr % 2
                skip = ~fin & (ptr < 2 * M) & ~np.where(arm == 0, need_c, need_t)
                ptr = ptr + skip
            go = ~fin & (ptr < 2 * M)
            arm = ptr % 2
            idx = np.minimum(ptr // 2, M - 1)
            done_slot = go & ok[arm, r, idx]
            add_c += done_slot & (arm == 0)
            add_t += done_slot & (arm == 1)
            att += np.where(go, attempts[arm, r, idx], 0)
            started |= go
            ptr = ptr + go
        nc += add_c
        nt += add_t
        fin |= ~started
    td, ld, _, _ = state(nc, nt)
    return nc, nt, att, td, ld


def simulate(time_sigma: float, time_delta: float, loss_mean: float, loss_sigma: float,
             treatment_time_sigma: float | None = None, alpha_time: float = th.ALPHA_TIME,
             alpha_loss: float = th.ALPHA_LOSS, max_runs: int = th.RUNS, min_effect: float = th.MIN_EFFECT,
             target_loss: float = th.TARGET_LOSS, sims: int = 10_000, seed: int = 0,
             futility_alpha: float = seq.FUTILITY_ALPHA, max_parallel: int = 1,
             fail_prob: float = 0.0, diverge_prob: float = 0.0, retries: int = 2,
             time_test: str = "welch", variance=None, sigma_off: float = 1.0,
             borrowed_draw: str = "fresh", **stress) -> dict:
    """Operating characteristics of the sequential procedure (one treatment).

    Run counts come from ``schedule``, the runner's own scheduling (``max_parallel``
    jobs at once, ``retries`` after a failed attempt that happens with ``fail_prob``,
    treatment runs that diverge with ``diverge_prob``); decisions from the vectorised
    ``look()``. tests/test_one_accounting.py checks both against the real ``Runner``.
    ``stress``: ``noise``, ``time_drift``, ``outlier_prob``, ``outlier_s`` of ``draw``.

    ``variance`` (a ``borrow.VariancePlan``): the ``BorrowedPlan`` of borrowed / known sigma
    decides, and the fixed and naive rows use its statistics. ``sigma_off``: every current
    sigma (both arms' times, the losses) is that many times the stated one (1.5: the
    borrowed sigma is 1.5x too small). ``borrowed_draw``: "fresh" draws each experiment's
    borrowed variance from the borrowed runs' law (sigma^2 chi^2_df / df: the design's
    error rates over borrowed samples), "fixed" keeps the borrowed sigma as given.
    """
    st = time_sigma if treatment_time_sigma is None else treatment_time_sigma
    for name, v in (("--time-sigma", time_sigma), ("--treatment-time-sigma", st), ("--loss-sigma", loss_sigma)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise UserError(f"{name} {v!r}: expected a standard deviation > 0, e.g. 0.09")
    for name, v in (("--time-delta", time_delta), ("--loss-mean", loss_mean), ("--target-loss", target_loss)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise UserError(f"{name} {v!r}: expected a number")
    if not isinstance(sims, int) or sims < 1:
        raise UserError(f"--sims {sims!r}: expected a positive integer, e.g. 10000")
    if not isinstance(max_parallel, int) or max_parallel < 1:
        raise UserError(f"--max-parallel {max_parallel!r}: expected a positive integer")
    for name, v in (("--fail-prob", fail_prob), ("--diverge-prob", diverge_prob)):
        if not (isinstance(v, (int, float)) and 0 <= v < 1):
            raise UserError(f"{name} {v!r}: expected a probability in [0, 1)")
    if fail_prob > 0 and max_parallel > 1:
        # a retried attempt then ends after later slots: the launch-order prefixes
        # change under the looks; that is not emulated (the real runner handles it)
        raise UserError("--fail-prob with --max-parallel > 1 is not emulated; use --max-parallel 1")
    if variance is not None:                     # borrowed / known sigma (borrow_seq)
        plan, (time_sigma, st, loss_sigma) = _borrowed_plan(
            variance, sigma_off, borrowed_draw, time_test, (time_sigma, st, loss_sigma),
            alpha_time, alpha_loss, target_loss, min_effect, max_runs, futility_alpha)
    else:
        plan = seq.SequentialPlan("H0", ["H1"], alpha_time, alpha_loss, target_loss, min_effect, max_runs,
                                  futility_alpha, time_test=time_test)
    M = plan.max_runs
    n = np.arange(2, M + 1)
    rng = np.random.default_rng(seed)
    acc = {k: 0 for k in ("tpass", "tfail", "lpass", "lfail", "both", "fixed_t", "fixed_l", "fixed_both",
                          "naive_t", "naive_l", "naive_both", "nc", "nt", "att")}
    totals = []
    time_looks = []
    done = 0
    while done < sims:
        B = min(BLOCK, sims - done)
        progress.report(f"simulating {sims} experiments (M {M})", done, sims)
        done += B
        d = draw(rng, B, M, time_sigma, st, time_delta, loss_mean, loss_sigma, fail_prob, diverge_prob, retries,
                 **stress)
        ctimes = _compact(d["ctime"], d["ok_c"])
        ttimes = _compact(d["ttime"], d["ok_t"])
        tloss = _compact(d["tloss"], d["ok_t"])
        div = _compact(d["diverged"].astype(float), d["ok_t"]) == 1.0
        bor = draw_borrowed(rng, B, variance, borrowed_draw) if variance is not None else None
        kt, dt, kl, dl = decision_looks(plan, ctimes, ttimes, tloss, div, bor)
        nc, nt, att, td, ld = schedule(plan, kt, dt, kl, dl, d["ok_c"], d["ok_t"], d["att_c"], d["att_t"],
                                       max_parallel)
        totals.append((nc + nt).astype(np.int16))
        time_looks.append(np.where(td != 0, kt, 0).astype(np.int16))
        acc["tpass"] += int((td == 1).sum())
        acc["tfail"] += int((td == -1).sum())
        acc["lpass"] += int((ld == 1).sum())
        acc["lfail"] += int((ld == -1).sum())
        acc["both"] += int(((td == 1) & (ld == 1)).sum())
        # the fixed design and the naive peeker on all M runs per arm (no failures)
        mc, vc = seq._moments(d["ctime"])
        mt, vt = seq._moments(d["ttime"])
        pt = seq.welch_p(mt - mc, vc, vt, n)[0]
        ml, vl = seq._moments(d["tloss"] - target_loss)
        pl = seq.one_sample_p(ml, vl, n)[0]
        if variance is not None:                 # the table's tests with the sigma borrowed
            pt, _, pl, _ = borrowed_p(plan, d["ctime"], d["ttime"], d["tloss"], bor)
        ft, fl = pt[:, -1] <= alpha_time, pl[:, -1] <= alpha_loss
        acc["fixed_t"] += int(ft.sum())
        acc["fixed_l"] += int(fl.sum())
        acc["fixed_both"] += int((ft & fl).sum())
        nvt, nvl = (pt <= alpha_time).any(axis=1), (pl <= alpha_loss).any(axis=1)
        acc["naive_t"] += int(nvt.sum())
        acc["naive_l"] += int(nvl.sum())
        acc["naive_both"] += int((nvt & nvl).sum())
        acc["nc"] += int(nc.sum())
        acc["nt"] += int(nt.sum())
        acc["att"] += int(att.sum())
    tot = np.concatenate(totals)
    looks = np.concatenate(time_looks)

    def rate(k):
        return acc[k] / sims

    def se(r):
        return math.sqrt(max(r * (1 - r), 1.0 / sims) / sims)

    out = {
        "method": seq.METHOD,
        "sims": sims, "seed": seed, "max_runs": M,
        "alpha_time": float(alpha_time), "alpha_loss": float(alpha_loss),
        "futility_alpha": float(futility_alpha), "min_effect": float(min_effect),
        "target_loss": float(target_loss),
        "time_sigma": float(time_sigma), "treatment_time_sigma": float(st),
        "time_delta": float(time_delta), "loss_mean": float(loss_mean), "loss_sigma": float(loss_sigma),
        "reject_rate": rate("tpass"), "time_fail_rate": rate("tfail"),
        "loss_pass_rate": rate("lpass"), "loss_fail_rate": rate("lfail"),
        "both_rate": rate("both"),
        "reject_rate_se": se(rate("tpass")), "loss_pass_rate_se": se(rate("lpass")),
        "mean_control_runs": acc["nc"] / sims, "mean_treatment_runs": acc["nt"] / sims,
        "mean_total_runs": float(tot.mean()), "mean_attempts": acc["att"] / sims,
        "max_parallel": max_parallel, "time_test": time_test, "fail_prob": float(fail_prob), "diverge_prob": float(diverge_prob),
        "retries": retries, "p95_total_runs": float(np.percentile(tot, 95)),
        "max_total_runs": int(tot.max()),
        "time_decided_by_pair": {str(k): float((looks == k).mean()) for k in range(2, M + 1)},
        "fixed_total_runs": 2 * M,
        "fixed_reject_rate": rate("fixed_t"), "fixed_loss_pass_rate": rate("fixed_l"),
        "fixed_both_rate": rate("fixed_both"),
        "naive_reject_rate": rate("naive_t"), "naive_loss_pass_rate": rate("naive_l"),
        "naive_both_rate": rate("naive_both"),
    }
    if variance is not None:
        out.update(variance=plan.variance.to_dict(), variance_line=plan.variance.line(),
                   sigma_off=float(sigma_off), borrowed_draw=borrowed_draw,
                   time_fail_rate_se=se(rate("tfail")), loss_fail_rate_se=se(rate("lfail")),
                   both_rate_se=se(rate("both")))
    return out


def _borrowed_plan(variance, sigma_off, borrowed_draw, time_test, sigmas, alpha_time, alpha_loss,
                   target_loss, min_effect, max_runs, futility_alpha):
    """The ``BorrowedPlan`` simulate runs, and the current runs' true sigmas (x ``sigma_off``)."""
    from harness.design import borrow_seq
    if not (isinstance(sigma_off, (int, float)) and math.isfinite(sigma_off) and sigma_off > 0):
        raise UserError(f"--sigma-off {sigma_off!r}: expected a factor > 0, e.g. 1.5")
    if borrowed_draw not in BORROWED_DRAWS:
        raise UserError(f"--borrowed-draw {borrowed_draw!r}: expected one of {', '.join(BORROWED_DRAWS)}")
    if time_test != "welch":
        raise UserError("--time-test trimmed with a borrowed or known sigma: the borrowed design's time "
                        "test is the pooled t; drop one of them")
    plan = borrow_seq.BorrowedPlan("H0", ["H1"], alpha_time, alpha_loss, target_loss, min_effect, max_runs,
                                   futility_alpha, variance=variance)
    return plan, tuple(sigma_off * x for x in sigmas)


BORROWED_DRAWS = ("fresh", "fixed")


def draw_borrowed(rng, B: int, variance, how: str = "fresh") -> dict:
    """Each simulated experiment's borrowed sigmas ((B, 1) arrays): the earlier runs drawn
    afresh (their true sigma the borrowed value, df_b degrees of freedom) or the value as given."""
    out = {}
    for what in ("time", "loss"):
        s = getattr(variance, what)
        if s is None:
            continue
        if how == "fixed" or s.known:
            out[what] = np.full((B, 1), s.value)
        else:
            out[what] = s.value * np.sqrt(rng.chisquare(s.df, (B, 1)) / s.df)
    return out


# --------------------------------------------------------------------------- step sweeps (issue 16)
def draw_sweep(rng, B: int, M: int, losses, loss_sigma: float) -> np.ndarray:
    """(B, K, M) final losses: run j of the sweep arm at step count k (launch-order slot j)."""
    mu = np.asarray(losses, dtype=float)
    return mu[None, :, None] + loss_sigma * rng.standard_normal((B, mu.size, M))


def simulate_sweep(steps, losses, loss_sigma: float, target_loss: float = th.TARGET_LOSS,
                   alpha_loss: float = th.ALPHA_LOSS, max_runs: int = th.RUNS, sims: int = 10_000,
                   seed: int = 0, max_parallel: int = 1) -> dict:
    """Operating characteristics of ``--until-decisive`` on a step sweep (harness/design/sweep_seq.py).

    ``losses``: the true mean final loss at each of ``steps``. Decisions and run counts
    come from ``sweep_seq.run_paths`` (``run_paths_parallel`` with several jobs), the
    decider's own procedure vectorised with the runner's scheduling, so the counts are
    the runner's (tests/test_sweep.py runs the real Runner on the same draws).
    "right": the true smallest step count below the target is named; "false": a step
    count whose true mean is at or above the target is decided below.
    """
    from harness.design import sweep_seq
    steps = [int(s) for s in steps]
    mu = np.asarray(losses, dtype=float)
    if len(steps) < 2 or len(set(steps)) != len(steps) or any(s <= 0 for s in steps):
        raise UserError(f"--sweep-steps {steps!r}: expected 2 or more distinct positive step counts, "
                        f"e.g. 1550,1560,1575")
    if mu.shape != (len(steps),) or not np.isfinite(mu).all():
        raise UserError(f"--sweep-losses: expected {len(steps)} numbers, one true mean loss per step count")
    if not (isinstance(loss_sigma, (int, float)) and math.isfinite(loss_sigma) and loss_sigma > 0):
        raise UserError(f"--loss-sigma {loss_sigma!r}: expected a standard deviation > 0, e.g. 0.0009")
    if not isinstance(sims, int) or sims < 1:
        raise UserError(f"--sims {sims!r}: expected a positive integer, e.g. 10000")
    if not isinstance(max_parallel, int) or max_parallel < 1:
        raise UserError(f"--max-parallel {max_parallel!r}: expected a positive integer")
    order = np.argsort(steps)
    steps, mu = [steps[i] for i in order], mu[order]
    plan = sweep_seq.SweepPlan("H0", "H1", [(s, f"H1@{s}") for s in steps], target_loss, alpha_loss, max_runs)
    xs = sweep_seq.positions(steps)
    K, M = len(steps), plan.max_runs
    rng = np.random.default_rng(seed)
    truth = next((i for i in range(K) if mu[i] < target_loss), -1)
    null = mu >= target_loss
    acc = {"right": 0, "false": 0, "none": 0, "runs": 0, "sweep": 0, "control": 0}
    claims = np.zeros(K + 1, dtype=np.int64)
    per_arm = np.zeros(K)
    totals = []
    done = 0
    while done < sims:
        B = min(BLOCK // 4, sims - done)
        done += B
        y = draw_sweep(rng, B, M, mu, loss_sigma) - target_loss
        if max_parallel == 1:
            res = sweep_seq.run_paths(y, xs, M, plan.below, plan.above)
        else:       # the runner launches up to max_parallel runs of the arm a look needs
            res = sweep_seq.run_paths_parallel(y, xs, M, plan.below, plan.above, max_parallel)
        below = res["dec"] == 1
        claim = np.where(below.any(axis=1), below.argmax(axis=1), -1)
        acc["right"] += int((claim == truth).sum())
        acc["false"] += int((below & null[None, :]).any(axis=1).sum())
        acc["none"] += int((claim == -1).sum())
        claims += np.bincount(claim + 1, minlength=K + 1)
        per_arm += res["n"].sum(axis=0)
        acc["sweep"] += int(res["n"].sum())
        acc["control"] += int(res["control"].sum())
        totals.append(res["runs"])
    tot = np.concatenate(totals)

    def se(r):
        return math.sqrt(max(r * (1 - r), 1.0 / sims) / sims)
    right, false = acc["right"] / sims, acc["false"] / sims
    return {"method": sweep_seq.METHOD, "mode": "sweep", "sims": sims, "seed": seed, "max_runs": M,
            "steps": steps, "losses": mu.tolist(), "loss_sigma": float(loss_sigma),
            "target_loss": float(target_loss), "alpha_loss": float(alpha_loss),
            "true_smallest": None if truth < 0 else steps[truth],
            "right_rate": right, "right_rate_se": se(right), "false_rate": false, "false_rate_se": se(false),
            "no_claim_rate": acc["none"] / sims,
            "claimed": {("none" if i == 0 else str(steps[i - 1])): float(c / sims) for i, c in enumerate(claims)},
            "mean_runs_per_step": {str(s): float(per_arm[i] / sims) for i, s in enumerate(steps)},
            "mean_sweep_runs": acc["sweep"] / sims, "mean_control_runs": acc["control"] / sims,
            "mean_total_runs": float(tot.mean()), "p95_total_runs": float(np.percentile(tot, 95)),
            "max_total_runs": int(tot.max()), "fixed_total_runs": (K + 1) * M,
            "below_boundaries": list(map(float, plan.below)), "max_parallel": max_parallel}
