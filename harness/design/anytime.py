"""Anytime-valid stopping for ``harness run --anytime``: e-processes, optional continuation.

Method: for each criterion a test martingale (an e-process) whose running value E_n
after n observations satisfies, under the null, P(E_n >= 1/alpha for some n) <= alpha
at any horizon (Ville's inequality). So the experiment may stop, or be continued
with more runs later, whenever anyone likes: a PASS is declared the first time E_n
reaches 1/alpha, and its false-pass rate stays at or below alpha.

* The statistic: the sequential t-test built on scale invariance (Cox 1952; Lai 1976,
  "On confidence sequences", Ann. Statist. 4:265-280), i.e. the Bayes factor with the
  right-Haar prior on sigma, which is an e-process for every sigma (Perez-Ortiz,
  Lardy, de Heide & Grunwald 2024, "E-statistics, group invariance and anytime-valid
  testing", Ann. Statist. 52:1410-1432). The likelihood ratio of the maximal
  invariant y / |y| for a standardized mean delta against 0 is
  exp(-n delta^2 / 2) * int u^(n-1) exp(-u^2/2 + a u) du / int u^(n-1) exp(-u^2/2) du,
  a = delta * sum(y) / sqrt(sum(y^2)); mixed with equal weights over ``DELTAS``
  (standardized effects from small to the record's).
* Loss: y = loss - target (null: mean at or above the target; alternative below).
* Time: y = treatment time - control time of the k-th pair (launch order); the
  pairs' differences are i.i.d. N(delta, s_c^2 + s_t^2), so no variance ratio enters
  (the group-sequential design's nuisance) and the test is exact.
* No futility and no last look: a criterion not passed is "open"; at the --max-runs
  budget the gate FAILs it as not shown, and a later run with a larger --max-runs
  continues the same e-process (allowed: that is what anytime-valid means).
* A diverged treatment run fails the loss criterion (final), as in the gate.
"""
from __future__ import annotations

import math

import numpy as np

from harness import thresholds as th
from harness.design.sequential import Look, _finite, _sort, settle
from harness.errors import UserError

METHOD = ("anytime-valid sequential t-tests: scale-invariant likelihood-ratio e-processes (Cox 1952; "
          "Lai 1976; Perez-Ortiz et al. 2024), mixture over standardized effects, Ville's inequality; "
          "time on paired differences")
DELTAS = (0.25, 0.5, 1.0, 2.0, 4.0)     # standardized effects mixed (equal weights)
MAX_RUNS = 60                           # a = delta * sqrt(n) stays where hyp1f1 is finite


def log_e_values(y: np.ndarray) -> np.ndarray:
    """log E_n for n = 1..N of each row of y (paths, N): evidence that the mean is < 0.

    NaN in y (a missing value) makes that look and the later ones NaN.
    """
    from scipy import special
    y = np.atleast_2d(np.asarray(y, dtype=float))
    N = y.shape[1]
    n = np.arange(1, N + 1, dtype=float)
    S = np.cumsum(y, axis=1)
    Q = np.cumsum(y * y, axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.where(Q > 0, -S / np.sqrt(Q), np.nan)        # > 0 when the mean looks below 0
        ratio = np.exp(special.gammaln((n + 1) / 2) - special.gammaln(n / 2)) * math.sqrt(2.0)
        total = np.zeros_like(r)
        for d in DELTAS:
            a = d * r
            m = (special.hyp1f1(n / 2, 0.5, a * a / 2) + a * ratio * special.hyp1f1((n + 1) / 2, 1.5, a * a / 2))
            total = total + np.maximum(m, 0.0) * np.exp(-n * d * d / 2)
        out = np.log(total / len(DELTAS))
    return np.where(np.isnan(r), np.nan, out)


def first_pass(log_e: np.ndarray, alpha: float) -> np.ndarray:
    """Per row, the first n (1-based) with E_n >= 1/alpha, else 0."""
    hit = log_e >= math.log(1.0 / alpha)
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)



class AnytimePlan:
    """The stopping rule of ``--anytime``; same interface as ``sequential.SequentialPlan``."""

    design = "anytime"

    def __init__(self, control: str, treatments: list[str], alpha_time: float = th.ALPHA_TIME,
                 alpha_loss: float = th.ALPHA_LOSS, target_loss: float = th.TARGET_LOSS, max_runs: int = th.RUNS,
                 saved: dict | None = None) -> None:
        treatments = list(treatments)
        if not treatments:
            raise UserError("--anytime needs at least one treatment besides the control")
        for name, a in (("alpha_time", alpha_time), ("alpha_loss", alpha_loss)):
            if not isinstance(a, (int, float)) or not 0 < a < 0.5:
                raise UserError(f"{name} {a!r}: expected a number in (0, 0.5), e.g. 0.001")
        if not isinstance(max_runs, int) or not 2 <= max_runs <= MAX_RUNS:
            raise UserError(f"max runs {max_runs!r}: expected an integer from 2 to {MAX_RUNS} with --anytime")
        self.control, self.treatments = control, treatments
        self.alpha_time, self.alpha_loss = float(alpha_time), float(alpha_loss)
        self.target_loss, self.max_runs = float(target_loss), int(max_runs)
        self.journal: list[dict] = [dict(e) for e in (saved or {}).get("decisions") or []]

    def to_dict(self) -> dict:
        return {"design": self.design, "method": METHOD, "control": self.control,
                "treatments": self.treatments, "alpha_time": self.alpha_time, "alpha_loss": self.alpha_loss,
                "target_loss": self.target_loss, "max_runs": self.max_runs, "deltas": list(DELTAS),
                "decisions": [dict(e) for e in self.journal]}

    @classmethod
    def from_dict(cls, d: dict) -> "AnytimePlan":
        try:
            return cls(d["control"], d["treatments"], d["alpha_time"], d["alpha_loss"], d["target_loss"],
                       d["max_runs"], saved=d)
        except (KeyError, TypeError) as e:
            raise UserError(f"saved anytime plan is incomplete ({e}); restore sequential.json from a copy") from None

    def _crit(self, y: list[float], alpha: float, what: str, unit: str) -> dict:
        if not y:
            return {"decision": "open", "why": f"no {what} yet", "look": 0, "line": f"no {what} yet"}
        le = log_e_values(np.asarray(y)[None])[0]
        k = int(first_pass(le[None], alpha)[0])
        j = (k or len(y)) - 1
        e = float(np.exp(le[j])) if math.isfinite(le[j]) else float("nan")
        d = {"look": k or len(y), "n": k or len(y), "e_value": e, "threshold": 1.0 / alpha,
             "mean": float(np.mean(y[:j + 1]))}
        line = f"{what} {j + 1}: mean {d['mean']:+.5f}{unit}, e-value {e:.3g} (pass at >= {1 / alpha:g})"
        if k:
            d.update(decision="pass", why=f"e-value {e:.3g} >= {1 / alpha:g} at {what} {k}")
        else:
            d.update(decision="open", why=line)
        d["line"] = line
        return d

    def look(self, records: dict[str, list]) -> Look:
        M = self.max_runs
        recs = {name: [r for r in _sort(records.get(name, []) or []) if r.status in ("ok", "diverged")]
                for name in [self.control, *self.treatments]}
        ctimes = [float(r.train_time_s) for r in recs[self.control] if _finite(r.train_time_s)]
        stored = {(e["hypothesis"], e["criterion"]): e for e in self.journal}
        decisions, lines, new = {}, [], []
        need = {self.control: False}
        for h in self.treatments:
            ttimes = [float(r.train_time_s) for r in recs[h] if _finite(r.train_time_s)]
            pairs = [t - c for c, t in zip(ctimes, ttimes)]
            losses = [float(r.val_loss) if _finite(r.val_loss) and r.status != "diverged" else math.nan
                      for r in recs[h]]
            fresh = {"time": self._crit(pairs, self.alpha_time, "pair", " s")}
            bad = next((i for i, x in enumerate(losses) if math.isnan(x)), None)
            loss = self._crit([x - self.target_loss for x in losses[:bad]], self.alpha_loss, "run", "")
            if bad is not None and loss["decision"] != "pass":
                loss = {"decision": "fail", "why": f"run {bad + 1} diverged (loss NaN): a diverged run fails "
                                                   f"the loss criterion", "look": bad + 1, "line": "diverged"}
            fresh["loss"] = loss
            decisions[h] = {}
            for crit, d in fresh.items():
                d, entry = settle(stored, h, crit, d, {self.control: len(recs[self.control]), h: len(recs[h])},
                                  statistic=d.get("e_value"), boundary=d.get("threshold"))
                if entry is not None:
                    self.journal.append(entry)
                    new.append(entry)
                decisions[h][crit] = {k: v for k, v in d.items() if k != "line"}
                lines.append(f"{h} {crit}: " + (f"{d['line']} -> open" if d["decision"] == "open"
                                                 else f"{d['decision'].upper()} - {d['why']}"))
            crit = [decisions[h][c]["decision"] for c in ("time", "loss")]
            lost = "fail" in crit
            need[h] = not lost and "open" in crit and len(recs[h]) < M
            if not lost and crit[0] == "open" and len(recs[self.control]) < M:
                need[self.control] = True
        done = not any(need.values())
        if done:
            opened = [f"{h} {c}" for h in self.treatments for c in ("time", "loss")
                      if decisions[h][c]["decision"] == "open"]
            reason = ("stop: every criterion is decided" if not opened else
                      f"stop: budget of {M} runs per arm reached with {', '.join(opened)} not shown; "
                      f"a larger --max-runs may continue (anytime-valid)")
        else:
            reason = "continue: " + ", ".join(f"{h} ({len(recs[h])}/{M})" for h, v in need.items() if v) + " need runs"
        lines.append(reason)
        return Look(need=need, done=done, decisions=decisions, lines=lines, reason=reason, new=new)

    def replay(self, records: dict[str, list]) -> Look:
        return AnytimePlan.from_dict({**self.to_dict(), "decisions": []}).look(records)
