"""Borrowed and known variance: the sigma of earlier runs (or a track's rule) in the tests.

Pure functions on lists of floats; nothing here reads files (``analyze`` loads the
earlier runs through ``sources`` and hands their values in).

* Known sigma (``known_loss_sigma`` / ``--known-loss-sigma``): tracks whose rules fix
  sigma test the loss with a one-sided z-test, z = (mean - target) * sqrt(n) / sigma.
  No consistency check: the rule, not the data, sets sigma.
* Borrowed sigma (``variance_from`` / ``--variance-from``): earlier runs give a
  pooled within-group variance s_b^2 with df_b = sum(n_g - 1) degrees of freedom.
  A quantity's variance estimate becomes the pooled
  ``((n - 1) s^2 + df_b s_b^2) / (n - 1 + df_b)`` with ``n - 1 + df_b`` degrees of
  freedom (the standard pooled estimate when both share one sigma). The loss test
  pools the treatment's losses with the borrowed loss sigma (one-sample t). The time
  test, only when the hardware of both is recorded and the same, becomes Student's
  pooled two-sample t with the earlier runs as a third sample of the same sigma:
  s^2 = ((n_c - 1) s_c^2 + (n_t - 1) s_t^2 + df_b s_b^2) / (n_c + n_t - 2 + df_b), exact
  when the run-to-run sigma is the hardware's and not the change's (the assumption
  borrowing makes; the consistency check guards it). Welch's t is not used there: with
  one arm's variance borrowed and the other's from 2 runs its df are badly wrong.
* Consistency check: before borrowing for an arm, a one-sided F test of "the arm's
  own spread is larger than the borrowed sigma" (``CHECK_LEVEL``). Only that side is
  checked: a borrowed sigma that is too small makes the tests claim too much, one
  that is too large only costs power (and falling back to a variance that happens
  to be small would itself make false claims). When it rejects, that arm does not
  borrow (its own variance, as without borrowing) and a warning says so; nothing
  fails: the fallback is the unborrowed test, which is valid on its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.analysis.stats import NAN, betainc, mean, norm_sf, std, sum_sq, t_cdf, usable
from harness.caveat import Caveat

CHECK_LEVEL = 0.05     # one-sided F test: refuse to borrow when the runs spread more, at this level


@dataclass(frozen=True)
class Sigma:
    """A standard deviation that does not come from the runs being tested."""

    value: float
    df: float                 # math.inf: known (fixed by the track's rules)
    runs: int = 0             # runs it was estimated from
    source: str = ""

    @property
    def known(self) -> bool:
        return math.isinf(self.df)

    def text(self, what: str) -> str:
        if self.known:
            return f"{what} sigma {self.value:g} known (fixed by the track's rules: z-test)"
        return (f"{what} sigma {self.value:.4g} borrowed from {self.runs} runs of {self.source} "
                f"({self.df:g} df)")

    def to_dict(self) -> dict:
        return {"sigma": self.value, "df": None if self.known else self.df, "runs": self.runs,
                "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "Sigma":
        df = d.get("df")
        return cls(float(d["sigma"]), math.inf if df is None else float(df), int(d.get("runs", 0)),
                   str(d.get("source", "")))


@dataclass(frozen=True)
class VariancePlan:
    """What the tests borrow: loss sigma (known or borrowed), the control's time sigma."""

    loss: Sigma | None = None
    time: Sigma | None = None
    time_note: str = ""        # why the time sigma is not borrowed, when it is not
    level: float = CHECK_LEVEL

    def line(self) -> str:
        """The one line saying what the table, gate and sequential design use."""
        parts = []
        if self.loss is not None:
            parts.append(self.loss.text("loss"))
        if self.time is not None:
            parts.append(self.time.text("time"))
        elif self.time_note:
            parts.append(f"time sigma not borrowed: {self.time_note}")
        check = "" if (self.loss is None or self.loss.known) and self.time is None else \
            f"; an arm that spreads more (F test, level {self.level:g}) does not borrow"
        return "variance: " + "; ".join(parts) + check

    def to_dict(self) -> dict:
        return {"loss": None if self.loss is None else self.loss.to_dict(),
                "time": None if self.time is None else self.time.to_dict(),
                "time_note": self.time_note, "level": self.level}

    @classmethod
    def from_dict(cls, d: dict | None) -> "VariancePlan | None":
        if not d:
            return None
        return cls(loss=Sigma.from_dict(d["loss"]) if d.get("loss") else None,
                   time=Sigma.from_dict(d["time"]) if d.get("time") else None,
                   time_note=str(d.get("time_note", "")), level=float(d.get("level", CHECK_LEVEL)))


def known(sigma: float) -> Sigma:
    return Sigma(float(sigma), math.inf)


def estimate(groups: list[list[float]], source: str) -> Sigma | None:
    """Pooled within-group sigma of earlier runs (each group around its own mean).

    Non-finite values (diverged runs) are left out; None when no group has 2 values.
    """
    ss, df, runs = 0.0, 0, 0
    for xs in groups:
        xs = [x for x in xs if math.isfinite(x)]
        if len(xs) < 2:
            continue
        ss += sum_sq(xs)      # exactly 0 for a tied group, whatever the rounding of its mean
        df += len(xs) - 1
        runs += len(xs)
    if df == 0 or ss <= 0.0:
        return None
    return Sigma(math.sqrt(ss / df), float(df), runs, source)


# ---------------------------------------------------------------- distributions

def f_cdf(f: float, d1: float, d2: float) -> float:
    """P(F <= f) for Snedecor's F with (d1, d2) degrees of freedom."""
    if math.isnan(f) or d1 <= 0 or d2 <= 0:
        return NAN
    if f <= 0:
        return 0.0
    x = d1 * f / (d1 * f + d2)
    return betainc(d1 / 2.0, d2 / 2.0, x, d2 / (d1 * f + d2))


def consistency_p(xs: list[float], sigma: Sigma) -> float:
    """One-sided F-test p of "the runs' sigma is larger than the borrowed one"; nan below 2 runs."""
    xs = [x for x in xs if math.isfinite(x)]
    if len(xs) < 2 or sigma.known or sigma.value <= 0 or not usable(xs):
        return NAN
    f = std(xs) ** 2 / sigma.value ** 2
    return 1.0 - f_cdf(f, len(xs) - 1, sigma.df)


def agrees(xs: list[float], sigma: Sigma | None, level: float = CHECK_LEVEL) -> bool:
    """May ``xs`` borrow ``sigma``? A known sigma always; a borrowed one unless the F test rejects."""
    if sigma is None:
        return False
    p = consistency_p(xs, sigma)
    return math.isnan(p) or p >= level


def pooled(xs: list[float], sigma: Sigma) -> tuple[float, float]:
    """(variance, df) of ``xs`` pooled with the borrowed sigma (or the known one, df inf)."""
    if sigma.known:
        return sigma.value ** 2, math.inf
    n = len(xs)
    own = (n - 1) * std(xs) ** 2 if n >= 2 else 0.0
    df = sigma.df + max(n - 1, 0)
    return (own + sigma.df * sigma.value ** 2) / df, df


def _cdf(t: float, df: float) -> float:
    return norm_sf(-t) if math.isinf(df) else t_cdf(t, df)


# ---------------------------------------------------------------- tests

def one_sample_less(xs: list[float], mu: float, sigma: Sigma) -> float:
    """One-sided p that mean(xs) < mu, with the borrowed or known sigma (z-test when known)."""
    n = len(xs)
    if n < 1 or not usable(xs):
        return NAN
    var, df = pooled(xs, sigma)
    if var <= 0:
        return NAN
    return _cdf((mean(xs) - mu) / math.sqrt(var / n), df)


def pooled_t_less(a: list[float], b: list[float], sigma: Sigma) -> float:
    """One-sided p that mean(a) < mean(b): Student's pooled t with ``sigma`` as a third sample.

    df = n_a - 1 + n_b - 1 + df_b (a z-test when sigma is known).
    """
    na, nb = len(a), len(b)
    if na < 1 or nb < 1 or not usable(list(a) + list(b)):
        return NAN
    if sigma.known:
        var, df = sigma.value ** 2, math.inf
    else:
        ss = sum((len(xs) - 1) * std(xs) ** 2 for xs in (a, b) if len(xs) >= 2)
        df = na - 1 + nb - 1 + sigma.df
        var = (ss + sigma.df * sigma.value ** 2) / df
    if var <= 0:
        return NAN
    return _cdf((mean(a) - mean(b)) / math.sqrt(var * (1.0 / na + 1.0 / nb)), df)


# ---------------------------------------------------------------- the table's tests

@dataclass
class ArmTests:
    """One arm's p-values with the plan applied; None where the plan changes nothing."""

    loss_below: float | None = None
    loss_above: float | None = None
    time_faster: float | None = None
    time_slower: float | None = None
    notes: list[Caveat] | None = None       # arms that did not borrow, and why


def arm_tests(name: str, losses: list[float], times: list[float], control_name: str,
              control_times: list[float], target: float, plan: VariancePlan,
              is_control: bool) -> ArmTests:
    out = ArmTests(notes=[])
    if plan.loss is not None and all(math.isfinite(x) for x in losses) and losses:
        if agrees(losses, plan.loss, plan.level):
            out.loss_below = one_sample_less(losses, target, plan.loss)
            out.loss_above = one_sample_less([-x for x in losses], -target, plan.loss)
        else:
            out.notes.append(_refused(name, "loss", losses, plan.loss, plan.level))
    if plan.time is not None and not is_control:
        refused = [_refused(n, "time", xs, plan.time, plan.level)
                   for n, xs in ((control_name, control_times), (name, times))
                   if not agrees(xs, plan.time, plan.level)]
        if refused:      # both arms share the pooled variance: either one refusing stops it
            out.notes += refused
        else:
            out.time_faster = pooled_t_less(times, control_times, plan.time)
            out.time_slower = pooled_t_less(control_times, times, plan.time)
    return out


def _refused(name: str, what: str, xs: list[float], sigma: Sigma, level: float) -> Caveat:
    p = consistency_p(xs, sigma)
    return Caveat("variance", name, f"variance: {name} {what} sigma {std(xs):.4g} disagrees with the borrowed "
                  f"{sigma.value:.4g} (F test of a larger spread p {p:.2g} < {level:g}): its own variance is used instead")


# ---------------------------------------------------------------- the plan

def make_plan(known_loss_sigma: float | None = None, borrowed: dict | None = None,
              current_hardware: list | None = None, level: float = CHECK_LEVEL) -> VariancePlan | None:
    """The plan from a known loss sigma and/or earlier runs.

    ``borrowed``: {"source": text, "losses": [[...] per group], "times": [[...] per group],
    "hardware": [(model, count) or None per run]}. ``current_hardware``: the same for the
    runs being tested. The time sigma is borrowed only when every run of both records its
    hardware and it is one and the same.
    """
    if known_loss_sigma is None and borrowed is None:
        return None
    loss = known(known_loss_sigma) if known_loss_sigma is not None else None
    time, note = None, ""
    if borrowed is not None:
        src = borrowed["source"]
        if loss is None:
            loss = estimate(borrowed["losses"], src)
        hw_b, hw_c = list(borrowed.get("hardware") or []), list(current_hardware or [])
        seen = set(hw_b) | set(hw_c)
        if not hw_b or not hw_c or None in seen:
            note = "the hardware is not recorded in every run of both"
        elif len(seen) > 1:
            note = "the hardware differs: " + ", ".join(f"{m} x{c}" for m, c in sorted(seen))
        else:
            time = estimate(borrowed["times"], src)
            if time is None:
                note = f"{src} has no 2 runs with a time in one group"
    return VariancePlan(loss=loss, time=time, time_note=note, level=level)
