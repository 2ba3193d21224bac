"""Several treatments against one control, decided together: ``--until-decisive`` with K >= 2.

Design: a group-sequential Holm procedure (closed testing with Bonferroni intersection
tests, each a group-sequential test; Ye, Li, Jiang & Wang 2013, Stat. Med. 32:1112-1124;
the closure principle of Marcus, Peritz & Gabriel 1976). docs/multi-arm.md says why this
one and what it costs.

* Two families: the K "faster" claims (Welch, treatment j against the shared control)
  at ``alpha_time`` and the K "below target" claims (one-sample t) at ``alpha_loss``.
* Every arm keeps the two-arm design's looks and statistics (``sequential``). For each
  level m = 1..K, B_m are the two-arm boundaries calibrated at alpha / m (the same
  calibration, committed in ``design/calibrations``). An arm's strength s_j is the
  largest m whose boundary one of its looks so far has crossed.
* The intersection of the nulls in a set I is rejected when some j in I has s_j >= |I|:
  by the union bound its error is at most |I| * alpha / |I| = alpha, whatever the shared
  control does to the correlation, whenever arms stop (stopping only removes looks).
  Closed testing then rejects H_j when every I containing j is rejected, which for these
  tests is Holm's step-down on the strengths: with r claims passed, any open arm with
  s_j >= K - r passes; repeat. Strong control of the familywise error at alpha follows.
  A passed claim lowers the bar for the rest, also for looks already made ("recycling").
* Futility is the two-arm design's, per arm, non-binding (a stopped arm is still counted
  in K). A claim still open at its last look fails once no arm of its family can still
  pass (a later pass could otherwise still lift it).
* Looks follow the completed runs in launch order (``order``), one event per run, so a
  decision is a pure function of the ordered records; stored decisions are final.

``replay_paths`` is the one implementation of that rule, vectorised over paths: the plan
(``MultiArmPlan.look``) runs it on one path built from the records, the simulator on many.
"""
from __future__ import annotations

import math

import numpy as np

from harness import thresholds as th
from harness.design import sequential as seq
from harness.errors import UserError

DESIGN_KIND = "multi-arm"     # spec.json's design.kind and sequential.json's "design"
METHOD = ("group-sequential Holm over arms (closed testing with Bonferroni intersection tests; "
          "Ye, Li, Jiang & Wang 2013) on the two-arm boundaries calibrated at alpha/m, "
          "non-binding futility")
MAX_ARMS = 20

# how a decision was reached (codes of replay_paths' ``how`` arrays)
PASS, FUTILE, RAN_OUT, DIVERGED = 1, -1, -2, -3


def level_boundaries(kind: str, alpha: float, arms: int, max_runs: int) -> np.ndarray:
    """(arms, looks) pass boundaries: row m - 1 calibrated at alpha / m, made monotone in m
    (a lower boundary only lowers the error), so strength = how many rows a p crosses."""
    rows = [np.array(seq.boundaries(kind, alpha / m, max_runs, seq.RHO_PASS)) for m in range(1, arms + 1)]
    b = np.vstack(rows)
    return np.minimum.accumulate(b, axis=0)


def _strength(p: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """How many levels' boundaries p crosses (p: (n,), bounds: (K, n)); NaN crosses none."""
    with np.errstate(invalid="ignore"):
        return (p[None, :] <= bounds).sum(axis=0)


class Family:
    """One family's state over B paths and K arms (time or loss)."""

    def __init__(self, B: int, K: int):
        self.dec = np.zeros((B, K), dtype=np.int8)      # 1 pass, -1 fail, 0 open
        self.how = np.zeros((B, K), dtype=np.int8)
        self.look = np.zeros((B, K), dtype=np.int64)    # look that decided (0: none)
        self.last = np.zeros((B, K), dtype=np.int64)    # last look made
        self.s = np.zeros((B, K), dtype=np.int64)       # strength
        self.s_look = np.zeros((B, K), dtype=np.int64)  # the look that gave the strength
        self.at_c = np.zeros((B, K), dtype=np.int64)    # control runs when decided
        self.at_t = np.zeros((B, K), dtype=np.int64)    # arm runs when decided


def replay_paths(events, PT, PFT, PL, PFL, BT, FT, BL, FL, M: int):
    """Replay the family rule along event sequences; returns (time Family, loss Family, counts).

    events: an iterable of (arm, mask, has_time, diverged): arm -1 (control) or 0..K-1,
    mask (B,) the paths where that arm completes a run now, has_time (B,) whether the run
    has a usable time, diverged (B,) whether its loss is NaN. It may also be a generator
    that reads the state (the simulator's scheduler): it receives the live counts.
    PT/PFT: (B, K, M-1) time p (faster) / p (not faster by min_effect) at looks 2..M;
    PL/PFL the loss p (below) / (above). BT, BL: (K, M-1) level boundaries; FT, FL: (M-1,)
    futility boundaries.
    """
    B, K, _ = PT.shape
    T, L = Family(B, K), Family(B, K)
    c = {"nc": np.zeros(B, dtype=np.int64), "nc_time": np.zeros(B, dtype=np.int64),
         "n": np.zeros((B, K), dtype=np.int64), "n_time": np.zeros((B, K), dtype=np.int64)}

    def decide(F, sel, j, code, look):
        if not sel.any():
            return
        F.dec[sel, j] = 1 if code == PASS else -1
        F.how[sel, j] = code
        F.look[sel, j] = look[sel] if np.ndim(look) else look
        F.at_c[sel, j] = c["nc"][sel]
        F.at_t[sel, j] = c["n"][sel, j]

    def look_at(F, P, PF, Bnd, Fb, j, sel, lk):
        """Arm j's look lk (array over paths) on paths sel: strength, step-down, futility."""
        if not sel.any():
            return
        idx = np.nonzero(sel)[0]
        li = lk[idx] - 2
        p = P[idx, j, li]
        st = _strength(p, Bnd[:, li])
        better = st > F.s[idx, j]
        F.s[idx[better], j] = st[better]
        F.s_look[idx[better], j] = lk[idx[better]]
        F.last[idx, j] = lk[idx]
        step_down(F, sel)
        pf = PF[idx, j, li]
        with np.errstate(invalid="ignore"):
            fut = (F.dec[idx, j] == 0) & (pf <= Fb[li])
        fsel = np.zeros(B, dtype=bool)
        fsel[idx[fut]] = True
        decide(F, fsel, j, FUTILE, lk)

    def step_down(F, sel):
        for _ in range(K):
            rej = (F.dec == 1).sum(axis=1)
            cand = sel[:, None] & (F.dec == 0) & (F.s > 0) & (F.s >= (K - rej)[:, None])
            if not cand.any():
                return
            for j in range(K):
                decide(F, cand[:, j], j, PASS, F.last[:, j])

    def finalize(sel):
        for _ in range(2):          # a time failure makes an arm lost, which can end loss, and back
            for F in (T, L):
                lost = (T.dec == -1) | (L.dec == -1)
                active = ~lost & (F.dec == 0) & (F.last < M)
                end = sel & ~active.any(axis=1)
                if not end.any():
                    continue
                for j in range(K):
                    decide(F, end & (F.dec[:, j] == 0) & (F.last[:, j] >= M), j, RAN_OUT, F.last[:, j])

    gen = events(c, T, L) if callable(events) else iter(events)
    for arm, mask, has_time, diverged in gen:
        mask = np.asarray(mask, dtype=bool)
        tm = mask & np.asarray(has_time, dtype=bool)
        if arm < 0:
            c["nc"] += mask
            c["nc_time"] += tm
            lk = c["nc_time"]
            for j in range(K):
                sel = tm & (T.dec[:, j] == 0) & (lk >= 2) & (c["n_time"][:, j] >= lk) & (T.last[:, j] < lk)
                look_at(T, PT, PFT, BT, FT, j, sel, lk)
        else:
            j = arm
            c["n"][:, j] += mask
            c["n_time"][:, j] += tm
            lk = c["n_time"][:, j]
            sel = tm & (T.dec[:, j] == 0) & (lk >= 2) & (c["nc_time"] >= lk) & (T.last[:, j] < lk)
            look_at(T, PT, PFT, BT, FT, j, sel, lk.copy())
            div = mask & np.asarray(diverged, dtype=bool) & (L.dec[:, j] == 0)
            decide(L, div, j, DIVERGED, c["n"][:, j])
            L.last[div, j] = c["n"][div, j]
            nl = c["n"][:, j]
            sel = mask & ~div & (L.dec[:, j] == 0) & (nl >= 2)
            look_at(L, PL, PFL, BL, FL, j, sel, nl.copy())
        finalize(mask)
    return T, L, c


def need(T: Family, L: Family, c: dict, M: int):
    """(need control (B,), need arm (B, K)): the runner's rule for which arms still run."""
    lost = (T.dec == -1) | (L.dec == -1)
    need_t = ~lost & ((T.dec == 0) | (L.dec == 0)) & (c["n"] < M)
    need_c = (~lost & (T.dec == 0)).any(axis=1) & (c["nc"] < M)
    return need_c, need_t


def look_ps(ctime, ttime, tloss, min_effect: float, target_loss: float):
    """Per-look p-values from launch-order values (NaN where absent): ctime (B, M), ttime and
    tloss (B, K, M). Returns PT, PFT, PL, PFL as (B, K, M-1)."""
    B, K, M = ttime.shape
    n = np.arange(2, M + 1)
    # times relative to the first control run: the running moments lose no digits to ~98 s
    ref = np.nan_to_num(ctime[:, :1])
    ctime, ttime = ctime - ref, ttime - ref[:, :, None]
    mc, vc = seq._moments(ctime)
    PT, PFT, PL, PFL = (np.full((B, K, M - 1), np.nan) for _ in range(4))
    for j in range(K):
        mt, vt = seq._moments(ttime[:, j])
        PT[:, j], PFT[:, j], _ = seq.welch_p(mt - mc, vc, vt, n, min_effect)
        ml, vl = seq._moments(tloss[:, j] - target_loss)
        PL[:, j], PFL[:, j], _ = seq.one_sample_p(ml, vl, n)
    return PT, PFT, PL, PFL


# --------------------------------------------------------------------------- the plan
class MultiArmPlan:
    """The ``--until-decisive`` rule of K >= 2 treatments against one control (familywise).

    Same interface as ``sequential.SequentialPlan``: ``look(records)`` -> ``sequential.Look``
    (with ``family``, the report's per-arm table), ``to_dict``/``from_dict``, ``replay``,
    ``journal`` (decisions in the order they were made; final).
    """

    design = DESIGN_KIND
    familywise = True

    def __init__(self, control: str, treatments: list[str], alpha_time: float = th.ALPHA_TIME,
                 alpha_loss: float = th.ALPHA_LOSS, target_loss: float = th.TARGET_LOSS,
                 min_effect: float = th.MIN_EFFECT, max_runs: int = th.RUNS,
                 futility_alpha: float = seq.FUTILITY_ALPHA, saved: dict | None = None) -> None:
        treatments = list(treatments)
        if len(treatments) < 2:
            raise UserError("a multi-arm plan needs at least two treatments; use the two-arm design")
        if len(treatments) > MAX_ARMS:
            raise UserError(f"{len(treatments)} treatments: at most {MAX_ARMS} in one family")
        if control in treatments or len(set(treatments)) != len(treatments):
            raise UserError(f"treatments {treatments}: each once, and not the control {control}")
        seq._check_alpha("alpha_time", alpha_time)
        seq._check_alpha("alpha_loss", alpha_loss)
        seq._check_alpha("futility_alpha", futility_alpha)
        seq._check_max_runs(max_runs)
        if not seq._finite(min_effect) or min_effect < 0:
            raise UserError(f"min_effect {min_effect!r}: expected seconds >= 0")
        if not seq._finite(target_loss):
            raise UserError(f"target_loss {target_loss!r}: expected a number, e.g. {th.TARGET_LOSS}")
        self.control, self.treatments = control, treatments
        self.alpha_time, self.alpha_loss = float(alpha_time), float(alpha_loss)
        self.target_loss, self.min_effect = float(target_loss), float(min_effect)
        self.max_runs, self.futility_alpha = int(max_runs), float(futility_alpha)
        self.journal = seq.read_journal(saved)
        K, M = len(treatments), self.max_runs
        if saved is not None:
            b = saved.get("boundaries") or {}
            try:
                self.BT = np.array(b["time_levels"], dtype=float)
                self.BL = np.array(b["loss_levels"], dtype=float)
                self.FT = np.array(b["time_fail"], dtype=float)
                self.FL = np.array(b["loss_fail"], dtype=float)
            except (KeyError, TypeError, ValueError) as e:
                raise UserError(f"saved multi-arm plan: boundaries incomplete ({e}); restore "
                                f"sequential.json from a copy") from None
            if self.BT.shape != (K, M - 1) or self.BL.shape != (K, M - 1) or self.FT.shape != (M - 1,) \
                    or self.FL.shape != (M - 1,):
                raise UserError("saved multi-arm plan: boundaries do not match its arms and max_runs; "
                                "restore sequential.json from a copy")
        else:
            self.BT = level_boundaries("welch", self.alpha_time, K, M)
            self.BL = level_boundaries("one-sample", self.alpha_loss, K, M)
            self.FT = np.array(seq.boundaries("welch", self.futility_alpha, M, seq.RHO_FAIL))
            self.FL = np.array(seq.boundaries("one-sample", self.futility_alpha, M, seq.RHO_FAIL))

    def to_dict(self) -> dict:
        return {"design": DESIGN_KIND, "familywise": True, "method": METHOD, "version": seq.CAL_VERSION,
                "control": self.control, "treatments": self.treatments, "alpha_time": self.alpha_time,
                "alpha_loss": self.alpha_loss, "target_loss": self.target_loss,
                "min_effect": self.min_effect, "max_runs": self.max_runs,
                "futility_alpha": self.futility_alpha, "rho_pass": seq.RHO_PASS, "rho_fail": seq.RHO_FAIL,
                "time_test": "welch",
                "boundaries": {"time_levels": self.BT.tolist(), "loss_levels": self.BL.tolist(),
                               "time_fail": self.FT.tolist(), "loss_fail": self.FL.tolist()},
                "decisions": [dict(e) for e in self.journal]}

    @classmethod
    def from_dict(cls, d: dict) -> "MultiArmPlan":
        try:
            return cls(d["control"], d["treatments"], d["alpha_time"], d["alpha_loss"], d["target_loss"],
                       d["min_effect"], d["max_runs"], d.get("futility_alpha", seq.FUTILITY_ALPHA), saved=d)
        except (KeyError, TypeError) as e:
            raise UserError(f"saved multi-arm plan is incomplete ({e}); restore sequential.json "
                            f"from a copy") from None

    # -- one path from the records ---------------------------------------------------
    def _path(self, records: dict[str, list]):
        names = [self.control, *self.treatments]
        recs = {h: [x for x in seq._sort(records.get(h, []) or []) if x.status in ("ok", "diverged")]
                for h in names}
        pos = {h: i for i, h in enumerate(names)}
        allr = sorted(((x, h) for h in names for x in recs[h]),
                      key=lambda xh: (xh[0].order if xh[0].order is not None else 0, xh[0].index, pos[xh[1]]))
        K, M = len(self.treatments), self.max_runs
        ct = np.full((1, M), np.nan)
        tt = np.full((1, K, M), np.nan)
        tl = np.full((1, K, M), np.nan)
        events, seen_t, seen_l = [], {h: 0 for h in names}, {h: 0 for h in names}
        for x, h in allr:
            has_t = seq._finite(x.train_time_s)
            bad = not (seq._finite(x.val_loss) and x.status != "diverged")
            if has_t and seen_t[h] < M:
                (ct[0] if h == self.control else tt[0, pos[h] - 1])[seen_t[h]] = float(x.train_time_s)
            if h != self.control and seen_l[h] < M:
                tl[0, pos[h] - 1, seen_l[h]] = math.nan if bad else float(x.val_loss)
            seen_t[h] += has_t
            seen_l[h] += 1
            events.append((pos[h] - 1, np.array([True]), np.array([has_t]), np.array([bad])))
        return recs, events, ct, tt, tl

    def _replay(self, records):
        recs, events, ct, tt, tl = self._path(records)
        PT, PFT, PL, PFL = look_ps(ct, tt, tl, self.min_effect, self.target_loss)
        T, L, c = replay_paths(events, PT, PFT, PL, PFL, self.BT, self.FT, self.BL, self.FL, self.max_runs)
        return recs, (ct, tt, tl), (PT, PFT, PL, PFL), T, L, c

    def _decision(self, F, P, PF, bounds, fb, j, crit, extra) -> dict:
        K, M = len(self.treatments), self.max_runs
        dec, how, lk = int(F.dec[0, j]), int(F.how[0, j]), int(F.look[0, j] or F.last[0, j])
        li = max(lk, 2) - 2
        s, sl = int(F.s[0, j]), int(F.s_look[0, j])
        p = float(P[0, j, li]) if lk >= 2 else math.nan
        pf = float(PF[0, j, li]) if lk >= 2 else math.nan
        rej = int((F.dec[0] == 1).sum())
        what = "faster" if crit == "time" else f"below {self.target_loss:g}"
        unit = "pair" if crit == "time" else "run"
        d = {"look": lk, "n": lk, "p": p, "p_fail": pf, "strength": s, "arms": K,
             "boundary": float(bounds[0, li]) if lk >= 2 else math.nan,
             "fail_boundary": float(fb[li]) if lk >= 2 else math.nan, **extra}
        fmt = seq._fmt_p
        if dec == 1:
            ps = float(P[0, j, sl - 2])
            d.update(decision="pass", p=ps, boundary=float(bounds[s - 1, sl - 2]), look=lk,
                     why=f"{what}: p {fmt(ps)} <= {fmt(bounds[s - 1, sl - 2])} (level alpha/{s}) at "
                         f"{unit} {sl}; Holm step passed at {unit} {lk} (familywise over {K} arms)")
        elif dec == -1 and how == FUTILE:
            lab = f"not faster by {self.min_effect:g} s" if crit == "time" else f"above {self.target_loss:g}"
            d.update(decision="fail", why=f"{lab}: p {fmt(pf)} <= {fmt(fb[li])} at {unit} {lk}")
        elif dec == -1 and how == DIVERGED:
            d.update(decision="fail", why=f"run {lk} diverged (loss NaN): a diverged run fails the loss criterion")
        elif dec == -1:
            d.update(decision="fail", why=f"not shown {what} by the last look ({unit} {M}); best level "
                                          f"reached alpha/{s} where alpha/{K - rej} was needed"
                     if s else f"not shown {what} by the last look ({unit} {M}): no boundary crossed")
        elif lk < 2:
            d.update(decision="open", why=f"needs 2 runs per arm ({unit} {int(F.last[0, j])}/{M})")
        else:
            need = K - rej
            d.update(decision="open", why=f"{unit} {lk}/{M}: p {fmt(p)}, needs p <= {fmt(bounds[need - 1, li])} "
                                          f"(alpha/{need}) or more passes in the family")
        return d

    def look(self, records: dict[str, list]) -> seq.Look:
        K, M = len(self.treatments), self.max_runs
        recs, (ct, tt, tl), (PT, PFT, PL, PFL), T, L, c = self._replay(records)
        stored = {(e["hypothesis"], e["criterion"]): e for e in self.journal}
        decisions, lines, new = {}, [], []
        for j, h in enumerate(self.treatments):
            decisions[h] = {}
            for crit, F, P, PF, bb, fb in (("time", T, PT, PFT, self.BT, self.FT),
                                           ("loss", L, PL, PFL, self.BL, self.FL)):
                k = int(F.look[0, j] or F.last[0, j])
                extra = {}
                if crit == "time" and k >= 2:    # the difference at the look that decided
                    extra["diff"] = float(tt[0, j, :k].mean() - ct[0, :k].mean())
                if F.dec[0, j] != 0:
                    extra["at"] = {self.control: int(F.at_c[0, j]), h: int(F.at_t[0, j])}
                d = self._decision(F, P, PF, bb, fb, j, crit, extra)
                d["line"] = d["why"]
                runs = {self.control: int(F.at_c[0, j]), h: int(F.at_t[0, j])}
                d, entry = seq.settle(stored, h, crit, d, runs, p=d.get("p"), boundary=d.get("boundary"),
                                      strength=d.get("strength"))
                if entry is not None:
                    self.journal.append(entry)
                    new.append(entry)
                decisions[h][crit] = {k: v for k, v in d.items() if k != "line"}
                lines.append(f"{h} {crit}: " + (f"{d['line']} -> open" if d["decision"] == "open"
                                                 else f"{d['decision'].upper()} - {d['why']}"))
        # need, from the decisions as they stand (stored ones included)
        n_c = len(recs[self.control])
        needs = {self.control: False}
        for h in self.treatments:
            crit = [decisions[h][x]["decision"] for x in ("time", "loss")]
            lost = "fail" in crit
            needs[h] = not lost and "open" in crit and len(recs[h]) < M
            if not lost and crit[0] == "open" and n_c < M:
                needs[self.control] = True
        done = not any(needs.values())
        if done:
            reason = "stop: every arm of the family is decided"
            if all(len(recs[x]) < M for x in recs):
                reason += f" before the maximum of {M} runs per arm"
        else:
            stopped = [x for x, v in needs.items() if not v]
            reason = "continue: " + ", ".join(f"{x} ({len(recs[x])}/{M})" for x, v in needs.items() if v) \
                + " need runs" + ("; stopped: " + ", ".join(stopped) if stopped else "")
        lines.append(reason)
        out = seq.Look(need=needs, done=done, decisions=decisions, lines=lines, reason=reason, new=new)
        out.family = family_summary(self, decisions, ct[0], tt[0], tl[0], recs)
        return out

    def replay(self, records: dict[str, list]) -> seq.Look:
        return MultiArmPlan.from_dict({**self.to_dict(), "decisions": []}).look(records)


# --------------------------------------------------------------------------- the family's report
def family_summary(plan: MultiArmPlan, decisions: dict, ct, tt, tl, recs) -> dict:
    """Per arm: decisions and when, the simultaneous interval of the time difference, the
    ranking among arms below the target, the best arm and whether the data tell it apart."""
    K = len(plan.treatments)
    conf = th.FAMILY_CONFIDENCE
    level = 1 - (1 - conf) / K                   # Bonferroni: each interval at 1 - (1-conf)/K
    c = ct[np.isfinite(ct)]
    arms = []
    for j, h in enumerate(plan.treatments):
        t = tt[j][np.isfinite(tt[j])]
        row = {"arm": h, "runs": len(recs[h]),
               "time": decisions[h]["time"]["decision"], "loss": decisions[h]["loss"]["decision"],
               "time_at": _at(decisions[h]["time"]), "loss_at": _at(decisions[h]["loss"]),
               "verdict": seq.verdict(seq.Look({}, False, decisions), h),
               "diff": math.nan, "lo": math.nan, "hi": math.nan, "loss_mean": math.nan}
        if len(c) >= 2 and len(t) >= 2:
            row["diff"] = float(t.mean() - c.mean())
            row["lo"], row["hi"] = _welch_interval(t, c, level)
        ls = tl[j][: len(recs[h])]
        if len(ls) and np.isfinite(ls).all():
            row["loss_mean"] = float(ls.mean())
        arms.append(row)
    ok = [a for a in arms if a["loss"] == "pass" and math.isfinite(a["diff"])]
    ranked = sorted(ok, key=lambda a: a["diff"])
    best = None
    if ranked:
        top = ranked[0]
        ties = []
        tt_top = tt[plan.treatments.index(top["arm"])]
        for a in ranked[1:]:
            # the top arm against each runner-up (Welch, Bonferroni over the comparisons):
            # an interval of their difference that reaches 0 cannot tell them apart
            lo, hi = _welch_interval(tt[plan.treatments.index(a["arm"])], tt_top,
                                     1 - (1 - conf) / max(1, len(ranked) - 1))
            a["vs_best"] = [lo, hi]
            if not lo > 0:
                ties.append(a["arm"])
        best = {"arm": top["arm"], "verdict": top["verdict"], "tied_with": ties}
    return {"confidence": conf, "arms": arms, "ranked": [a["arm"] for a in ranked], "best": best,
            "control": plan.control, "control_runs": len(recs[plan.control])}


def _welch_interval(a, b, level: float) -> tuple[float, float]:
    """Two-sided Welch interval of mean(a) - mean(b) at ``level`` (NaN values dropped)."""
    from scipy import stats
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return math.nan, math.nan
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    q = float(stats.t.ppf(1 - (1 - level) / 2, df))
    d = float(a.mean() - b.mean())
    return d - q * se, d + q * se


def _at(d: dict) -> str:
    """The run at which a decision was made: the arm's run count (and the control's)."""
    if d.get("decision") == "open" or not d.get("at"):
        return "-"
    (c, nc), (h, nh) = list(d["at"].items())[:2]
    return f"run {nh} ({c}: {nc})"
