"""The time difference blocked by node: runs of a cluster compared within their node.

Between 8-GPU nodes the speedrun's time differs by far more (0.5 s and up) than
within one (0.03-0.17 s). A pooled Welch test over runs spread across nodes then
either mistakes a fast node for a speedup or drowns a speedup in node noise.

Method (named ``METHOD`` in reports): a **stratified Welch t-test** with nodes as
strata. The model is time = node effect + arm effect + noise, with one noise
variance per arm shared by all nodes (a node shifts times, it does not make them
noisier):

* each arm's within-node variance is pooled over every node it ran on
  (s_a^2 = within-node sum of squares / (n_a - nodes_a));
* the difference d_h = mean(treatment on h) - mean(control on h) on every node h
  that ran both arms; the estimate is their weighted mean with weights from the
  run counts only, w_h = n_ch n_th / (n_ch + n_th) (inverse-variance weights when
  both arms are equally noisy), so node effects cancel exactly. Weights from the
  estimated variances would be random and correlated with the estimate: on
  unbalanced nodes that test rejects too often (1.3e-3 and 1.2e-3 at alpha 1e-3,
  bench/bench_blocked.py); with a paired schedule both choices coincide;
* its variance s_c^2 A + s_t^2 B (A = sum (w_h/W)^2 / n_ch, B likewise); one-sided
  p from Student's t with **guarded Satterthwaite degrees of freedom**: the smallest
  of Satterthwaite's df at the estimated variances and at each arm's variance raised
  to its one-sided upper confidence bound (95%; 99% for an arm with 1 df: ``df_bound``). Plain Satterthwaite df
  are unreliable when an arm has few within-node df and carries most of the variance:
  an arm with 1 df gave 30x alpha at alpha 0.001. The guard keeps the rate at or below
  alpha for every variance share and every pair of df (bench/bench_blocked.py, the df
  grid), and tends to Satterthwaite as the df grow.

When an arm has no within-node degree of freedom (each of its runs alone on its node),
its variance is unknown; pooling it with the other arm's would assume equal variances
(the record's differ 1.7x; at 4x that test passed 125x too often). Then, and whenever it
has more degrees of freedom than the within-node test's smaller arm, the **node
differences** decide if every node that ran both arms ran them in the same counts: the
d_h are then independent with one variance whatever the arms' sigmas, and a one-sample
t-test of their mean (nodes - 1 df) is exact. Otherwise there is no result, and the
warning says what to run. The choice between the two is made on the run counts alone,
so it does not bias the test.

On one node this is exactly Welch's test when both arms have 2 or more df (the guard
changes nothing there only in the limit; tests/test_blocked.py checks Welch's estimate
and its t). A sample without spread (every within-node group of an arm tied) gives no
result, never p = 0 or 1. Runs on a node without the other arm cannot carry the
difference; they still inform the variances, and a warning names them with the fix.

Pure functions on (host, time) pairs; warnings are data, nothing is printed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from functools import lru_cache

from harness.analysis.stats import LARGE, NAN, mean, std, sum_sq, t_cdf, tied
from harness import thresholds as th
from harness.caveat import Caveat

METHOD = ("stratified Welch t-test blocked by node (within-node variance pooled per arm, guarded "
          "Satterthwaite df; node differences when an arm has no within-node df)")
NODE_DIFFERENCES = "node differences"   # BlockedTest.variance when the d_h decide
WITHIN = "within-node"                  # BlockedTest.variance when the arms' variances decide
SHORT = "stratified Welch by node"
UNKNOWN_HOST = "?"


@dataclass
class NodeEffect:
    host: str
    effect: float          # seconds: this node's times minus the mean over nodes (arm effect removed)
    runs: dict[str, int]   # arm -> runs on this node


@dataclass
class BlockedTest:
    """Treatment minus control, estimated within nodes and combined."""

    control: str
    treatment: str
    delta: float = NAN     # seconds (negative: the treatment is faster)
    se: float = NAN
    df: float = NAN
    t: float = NAN
    p: float = NAN         # one-sided: the treatment is faster
    p_slower: float = NAN  # one-sided: the treatment is slower
    nodes: int = 0         # nodes that ran both arms (the strata that carry the difference)
    variance: str = ""     # WITHIN or NODE_DIFFERENCES: where the variance of the difference came from
    effects: list[NodeEffect] = field(default_factory=list)
    unpaired: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> arm -> runs it alone ran
    problem: str = ""      # why there is no p-value, when there is none

    @property
    def label(self) -> str:
        return f"{SHORT} ({self.nodes} node{'s' if self.nodes != 1 else ''})"


def _by_host(runs: list[tuple[str, float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for host, x in runs:
        if x is not None and math.isfinite(x):
            out.setdefault(host or UNKNOWN_HOST, []).append(float(x))
    return out


def _mean(xs: list[float]) -> float:
    return mean(xs)


def _within(groups: dict[str, list[float]]) -> tuple[float, int]:
    """Within-node sum of squares (exactly 0 for tied groups) and its degrees of freedom."""
    return math.fsum(sum_sq(xs) for xs in groups.values()), sum(len(xs) - 1 for xs in groups.values())


def df_bound(df: int) -> float:
    """q of the df guard's upper bound for an arm with ``df`` within-node df (thresholds.py)."""
    return th.BLOCKED_DF_BOUND_1DF if df <= 1 else th.BLOCKED_DF_BOUND


def _gammainc_lower(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) by its series (x below a + 1 here)."""
    if x <= 0.0:
        return 0.0
    term = total = 1.0 / a
    k = a
    while term > total * 1e-17:
        k += 1.0
        term *= x / k
        total += term
    return total * math.exp(a * math.log(x) - x - math.lgamma(a))


@lru_cache(maxsize=None)
def chi2_lower_quantile(df: int, q: float) -> float:
    """The q quantile of chi-square with ``df`` degrees of freedom (q small: bisection below df)."""
    lo, hi = 0.0, float(df)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _gammainc_lower(df / 2.0, mid / 2.0) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _satterthwaite(x: float, y: float, dfx: int, dfy: int) -> float:
    return (x + y) ** 2 / (x * x / dfx + y * y / dfy)


def guarded_df(x: float, y: float, dfx: int, dfy: int) -> float:
    """Satterthwaite's df of x + y, guarded: also at each component raised to its upper bound.

    ``x`` and ``y`` are the two estimated variance components (s_c^2 A, s_t^2 B) with
    ``dfx`` and ``dfy`` degrees of freedom. See the module text for why and how calibrated.
    """
    xu = x * dfx / chi2_lower_quantile(dfx, df_bound(dfx))
    yu = y * dfy / chi2_lower_quantile(dfy, df_bound(dfy))
    return min(_satterthwaite(x, y, dfx, dfy), _satterthwaite(xu, y, dfx, dfy),
               _satterthwaite(x, yu, dfx, dfy))


def stratified(control: list[tuple[str, float]], treatment: list[tuple[str, float]],
               control_name: str = "H0", treatment_name: str = "H1") -> BlockedTest:
    """The blocked time test of one treatment against the control; see the module text."""
    c, t = _by_host(control), _by_host(treatment)
    res = BlockedTest(control_name, treatment_name)
    shared = sorted(set(c) & set(t))
    res.unpaired = {h: {control_name: len(c.get(h, [])), treatment_name: len(t.get(h, []))}
                    for h in sorted(set(c) ^ set(t))}
    res.nodes = len(shared)
    if not shared:
        res.problem = "no node ran both arms"
        return res
    if any(abs(x) > LARGE for xs in list(c.values()) + list(t.values()) for x in xs):
        res.problem = f"a time beyond {LARGE:g} s (read that run's log)"
        return res
    parts = []   # (d_h, a_h = 1/n_ch, b_h = 1/n_th)
    for h in shared:
        parts.append((_mean(t[h]) - _mean(c[h]), 1.0 / len(c[h]), 1.0 / len(t[h])))
    weights = [1.0 / (a + b) for _, a, b in parts]   # counts only: see the module text
    W = math.fsum(weights)
    res.delta = math.fsum(w * d for w, (d, _, _) in zip(weights, parts)) / W
    res.effects = _effects(c, t, res.delta, control_name, treatment_name)
    ss_c, df_c = _within(c)
    ss_t, df_t = _within(t)
    balanced = len({(len(c[h]), len(t[h])) for h in shared}) == 1
    # chosen on the run counts alone (never on the times), so the choice biases nothing
    if balanced and len(shared) >= 2 and len(shared) - 1 > min(df_c, df_t):
        return _node_differences(res, [d for d, _, _ in parts])
    if df_c < 1 or df_t < 1:
        arm = control_name if df_c < 1 else treatment_name
        res.problem = (f"{arm} has no within-node degree of freedom (no node ran it twice), so its "
                       f"variance is unknown" + ("" if balanced else
                                                 " and the nodes ran the arms in unequal counts"))
        return res
    if ss_c == 0.0 or ss_t == 0.0:
        arm = control_name if ss_c == 0.0 else treatment_name
        res.problem = f"no spread: {arm}'s times are equal within every node"
        return res
    A = math.fsum((w / W) ** 2 * a for w, (_, a, _) in zip(weights, parts))
    B = math.fsum((w / W) ** 2 * b for w, (_, _, b) in zip(weights, parts))
    x, y = ss_c / df_c * A, ss_t / df_t * B
    res.variance = WITHIN
    res.df = guarded_df(x, y, df_c, df_t)
    res.se = math.sqrt(x + y)
    res.t = res.delta / res.se
    res.p = t_cdf(res.t, res.df)
    res.p_slower = t_cdf(-res.t, res.df)
    return res


def _node_differences(res: BlockedTest, d: list[float]) -> BlockedTest:
    """One-sample t-test of the node differences' mean (equal counts on every shared node)."""
    if tied(d):
        res.problem = "no spread: every node shows the same difference"
        return res
    res.variance = NODE_DIFFERENCES
    res.df = float(len(d) - 1)
    res.se = std(d) / math.sqrt(len(d))
    res.t = res.delta / res.se
    res.p = t_cdf(res.t, res.df)
    res.p_slower = t_cdf(-res.t, res.df)
    return res


def _effects(c: dict[str, list[float]], t: dict[str, list[float]], delta: float,
             control_name: str, treatment_name: str) -> list[NodeEffect]:
    """Per node: mean time with the treatment's effect taken out, relative to the mean over nodes."""
    hosts = sorted(set(c) | set(t))
    level = {h: _mean(c.get(h, []) + [x - delta for x in t.get(h, [])]) for h in hosts}
    grand = _mean(list(level.values()))
    return [NodeEffect(h, level[h] - grand, {control_name: len(c.get(h, [])), treatment_name: len(t.get(h, []))})
            for h in hosts]


def spans_nodes(arms: dict[str, list[tuple[str, float]]]) -> bool:
    """Whether the runs with a time ran on more than one host."""
    return len({h or UNKNOWN_HOST for runs in arms.values() for h, _ in runs}) > 1


def blocked_tests(arms: dict[str, list[tuple[str, float]]], control: str) -> dict[str, BlockedTest]:
    """Treatment -> its blocked test, when the runs span several nodes (else empty: Welch is the test)."""
    if not spans_nodes(arms):
        return {}
    return {name: stratified(arms[control], runs, control, name)
            for name, runs in arms.items() if name != control}


def warnings(tests: dict[str, BlockedTest]) -> list[Caveat]:
    """Runs that the blocked test cannot use, with the counts per node and the fix."""
    out = []
    for name, bt in tests.items():
        if bt.problem == "no node ran both arms":
            counts = "; ".join(f"{h}: {', '.join(f'{a} {n}' for a, n in arms.items())}"
                               for h, arms in bt.unpaired.items())
            out.append(Caveat("blocked", name, f"{name} and {bt.control} never ran on the same node ({counts}): node speed and the "
                       f"change cannot be told apart, so the time test has no result; rerun with "
                       f"pairing = \"node\" (control and treatment on one node) or pin the experiment to one node"))
        elif bt.unpaired:
            alone = "; ".join(f"{h}: " + ", ".join(f"{a} {n}" for a, n in arms.items() if n)
                              for h, arms in bt.unpaired.items())
            out.append(Caveat("blocked", name, f"{name} vs {bt.control}: runs on nodes without the other arm do not count toward the "
                       f"blocked time difference ({alone}); schedule control and treatment in pairs on one node "
                       f"(pairing = \"node\", the default on multi-node SLURM partitions)"))
        elif bt.problem:
            out.append(Caveat("blocked", name, f"{name} vs {bt.control}: the blocked time test has no result: "
                                               f"{bt.problem}; run each arm at least twice on one node"))
    return out


def lines(tests: dict[str, BlockedTest], decided_by: str = "") -> list[str]:
    """Text block: the blocked test per treatment and the node effects. ``decided_by``:
    the design whose decisions the gate follows instead ('' when the gate uses this test)."""
    if not tests:
        return []
    use = (f"descriptive here: the gate follows the decisions of the {decided_by} design" if decided_by
           else "the gate's time criterion uses it")
    out = [f"time blocked by node: {METHOD}; {use}"]
    for name, bt in tests.items():
        if math.isnan(bt.p):
            out.append(f"  {name} vs {bt.control}: no result ({bt.problem or 'degenerate data'})")
            continue
        pv = "variance from the node differences, " if bt.variance == NODE_DIFFERENCES else ""
        out.append(f"  {name} vs {bt.control}: +/- {bt.delta:+.4f} s (se {bt.se:.4f}, {pv}df {bt.df:.1f}, "
                   f"{bt.nodes} node{'s' if bt.nodes != 1 else ''}), p faster {_p(bt.p)}, p slower {_p(bt.p_slower)}")
    first = next(iter(tests.values()))
    if first.effects:
        out.append("  node effects (s, treatment effect removed, relative to the mean over nodes): "
                   + ", ".join(f"{e.host} {e.effect:+.4f}" for e in first.effects))
    return out


def to_dict(bt: BlockedTest) -> dict:
    return {"method": METHOD, "control": bt.control, "treatment": bt.treatment, "time_delta": bt.delta,
            "se": bt.se, "df": bt.df, "t": bt.t, "p": bt.p, "p_slower": bt.p_slower, "nodes": bt.nodes,
            "variance": bt.variance, "problem": bt.problem,
            "node_effects": [{"host": e.host, "effect_s": e.effect, "runs": e.runs} for e in bt.effects],
            "unpaired_runs": bt.unpaired}


def _p(p: float) -> str:
    if math.isnan(p):
        return "nan"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.2e}"
