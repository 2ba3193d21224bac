"""Sequential stopping for ``harness run --until-decisive``.

Method: a group-sequential design with error spending, one look after every run.

* Looks. The time criterion looks at pair k = 2..M: the first k completed runs of
  the control and the first k of the treatment (launch order). The loss criterion
  looks at treatment run n = 2..M. Each look therefore sees a balanced sample, so
  the statistics' null distributions are known up to the variance ratio and
  the boundaries can be computed once, before any run.
* Statistics: the community's own. Time: Welch's t (treatment minus control, the
  one-sided p of ``scipy.stats.ttest_ind(h, control, equal_var=False,
  alternative="less")``). Loss: the one-sample t of the treatment's losses against
  the target (``ttest_1samp(..., alternative="less")``).
* Boundaries on the nominal p scale of each look's t-test (group-sequential t-tests:
  Jennison & Turnbull 1991, "Exact calculations for sequential t, chi^2 and F tests",
  Biometrika 78:133-141; error spending: Jennison & Turnbull 2000, *Group Sequential
  Methods with Applications to Clinical Trials*, ch. 7). The error allowed by look n
  follows the power-family spending function alpha * (n / M) ** rho of Kim & DeMets
  (1987, Biometrika 74:149-154), in the error-spending framework of Lan & DeMets
  (1983, Biometrika 70:659-663). rho = 3 (close to O'Brien-Fleming) for passing:
  almost all of alpha is kept for the last looks, so the power at M stays close to
  the fixed design's.
* Calibration by Monte Carlo, exact up to simulation error, deterministic (fixed
  seed) and cached. The one-sample t is pivotal: its null distribution at every
  look and jointly over looks does not depend on the mean or sigma, so one
  simulation of standard normals gives the boundaries. Welch's t with equal n
  depends on one nuisance only, the variance ratio; its boundaries are shaped at
  equal variances and then scaled down until the error stays at or below alpha for
  every ratio on a grid from equal to one arm noiseless (the least favourable
  ratio, about 1:5, sets the level; at equal variances the true error is lower).
* Futility ("clearly cannot pass"), non-binding: a second sequential test at level
  ``futility_alpha`` (default 0.1, linear spending rho = 1) of the opposite claim.
  Time: "the treatment is faster by at least min_effect" rejected (Welch p of
  (diff + min_effect) / se in the upper tail). Loss: "the mean loss is at or below
  the target" rejected. The pass boundaries are computed as if futility were never
  obeyed, so stopping for futility can only lower the false-pass rate.
* At the last look (M) a criterion that has not passed fails. A diverged run (NaN
  loss) fails the loss criterion of its treatment at once (statistics.md).

Decisions are a pure function of the ordered records: ``look`` replays every look
from the first, and the first boundary crossed fixes the decision, so runs that
finish after a decision (or a resumed experiment) never change it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import thresholds as th
from harness.design import progress
from harness.errors import UserError
from harness.formats import fmt_p

METHOD = ("group-sequential t-tests with error spending (Lan & DeMets 1983; power family "
          "alpha*(n/M)^rho, Kim & DeMets 1987), boundaries on the nominal p scale calibrated by "
          "Monte Carlo (Welch: worst variance ratio), non-binding futility")
RHO_PASS = 3.0            # spending for the pass boundaries (near O'Brien-Fleming)
RHO_FAIL = 1.0            # linear spending for the futility boundaries
FUTILITY_ALPHA = 0.1      # error of a futility stop at the edge of the null
CAL_SEED = 20240520       # the calibration's seed (fixed: boundaries never move)
CAL_VERSION = 2           # bump when the calibration procedure changes
# Calibrate to 0.97 alpha, not alpha: the boundaries are quantiles of a finite simulation
# (relative standard error 1-2 %), and the Welch error between grid ratios may sit a
# little above its value at the grid points; checked on independent seeds (bench).
TARGET = 0.97
TARGET_SMALL = 0.95       # alpha < 0.005: fewer crossings, so a wider margin for the same safety


TARGET_YUEN = 0.92        # Yuen: on fresh seeds 0.95 alpha gave 1.007 alpha at 8:1 (alpha 0.01)


def target(alpha: float, kind: str = "welch") -> float:
    """The fraction of alpha a calibration aims at."""
    if kind == "yuen":
        return TARGET_YUEN
    return TARGET_SMALL if alpha < 0.005 else TARGET
# w = sigma_t^2 / (sigma_c^2 + sigma_t^2); with equal n the null law of Welch's t is
# symmetric in w <-> 1 - w, so [0.5, 1] covers every variance ratio. The grid is dense
# in the sigma ratio where the error is highest (about 4:1 and beyond): the error is
# nearly flat there, so the worst of adjacent grid points bounds the ratios between.
SIGMA_RATIOS = (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 48, math.inf)
W_GRID = tuple(1.0 if math.isinf(r) else round(r * r / (1 + r * r), 6) for r in SIGMA_RATIOS)
PACKAGED = Path(__file__).resolve().parent / "calibrations"   # committed, read-only
MAX_LOOKS = 200
CHUNK = 1 << 16


# --------------------------------------------------------------------------- p-values
def _stdtr(df, t):
    from scipy import special
    return special.stdtr(df, t)


def welch_p(diff, var_c, var_t, n, shift=0.0):
    """Welch's one-sided p-values for ``n`` runs per arm (arrays broadcast).

    Returns (p_faster, p_not_faster, t): p of "treatment faster" (lower tail of
    t = diff / se, the table's Time p) and p of "not faster by ``shift``" (upper tail
    of (diff + shift) / se), with the Welch-Satterthwaite df.
    A sample with no spread gives NaN (no decision), never a p of 0.
    """
    diff = np.asarray(diff, dtype=float)
    se2 = (np.asarray(var_c, dtype=float) + np.asarray(var_t, dtype=float)) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(se2)
        df = se2 ** 2 / ((np.asarray(var_c) / n) ** 2 / (n - 1) + (np.asarray(var_t) / n) ** 2 / (n - 1))
        ok = se2 > 0
        t = np.where(ok, diff / se, np.nan)
        tf = np.where(ok, (diff + shift) / se, np.nan)
        df = np.where(ok, df, np.nan)
    return _stdtr(df, t), _stdtr(df, -tf), t


def _spread_var(x: np.ndarray) -> float:
    """Sample variance; nan for tied values (no spread, no decision: their computed variance
    is round-off of the mean, 1e-32, not a measurement)."""
    return math.nan if x.max() == x.min() else float(x.var(ddof=1))


def _t_upper(t: float, df: float) -> float:
    """P(T >= t) for Student's t (the futility side of the blocked statistic)."""
    from harness.analysis.stats import t_cdf
    return t_cdf(-t, df)

TIME_TESTS = ("welch", "trimmed")   # the experiment file's time_test
TRIM = 0.2                # Yuen's trimmed t: 20 % cut from each end (Wilcox's default)


def yuen_looks(c: np.ndarray, t: np.ndarray, shift: float = 0.0):
    """Yuen's trimmed-mean Welch test at every prefix n = 2..N of each row (Yuen 1974,
    "The two-sample trimmed t for unequal population variances", Biometrika 61:165-170).

    c, t: (rows, N) control and treatment values in launch order. Returns (p_faster,
    p_not_faster_by_shift, t) as (rows, N - 1) arrays. With fewer than 5 values nothing
    is trimmed and it is Welch's test. NaN in a prefix gives NaN (no decision).
    """
    c = np.atleast_2d(np.asarray(c, dtype=float))
    t = np.atleast_2d(np.asarray(t, dtype=float))
    N = min(c.shape[1], t.shape[1])
    rows = c.shape[0]
    pp = np.full((rows, max(N - 1, 0)), np.nan)
    pf, ts = pp.copy(), pp.copy()

    def part(x, n):
        sx = np.sort(x[:, :n], axis=1)
        g = int(math.floor(TRIM * n))
        h = n - 2 * g
        tm = sx[:, g:n - g].mean(axis=1)
        w = np.clip(sx, sx[:, g:g + 1], sx[:, n - g - 1:n - g])
        d = (n - 1) * w.var(axis=1, ddof=1) / (h * (h - 1))
        return tm, d, h

    with np.errstate(divide="ignore", invalid="ignore"):
        for n in range(2, N + 1):
            mc, dc, h = part(c, n)
            mt, dt, _ = part(t, n)
            se2 = dc + dt
            ok = se2 > 0
            se = np.sqrt(se2)
            df = np.where(ok, se2 ** 2 / (dc ** 2 / (h - 1) + dt ** 2 / (h - 1)), np.nan)
            tt = np.where(ok, (mt - mc) / se, np.nan)
            tf = np.where(ok, (mt - mc + shift) / se, np.nan)
            pp[:, n - 2], pf[:, n - 2], ts[:, n - 2] = _stdtr(df, tt), _stdtr(df, -tf), tt
    return pp, pf, ts


def one_sample_p(mean_minus_target, var, n):
    """One-sample t p-values: (p below target, p above target, t); NaN when var == 0."""
    m = np.asarray(mean_minus_target, dtype=float)
    v = np.asarray(var, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(v > 0, m / np.sqrt(v / n), np.nan)
    return _stdtr(n - 1, t), _stdtr(n - 1, -t), t


# --------------------------------------------------------------------------- calibration
def spend(alpha: float, n: int, max_runs: int, rho: float) -> float:
    """Cumulative error allowed up to look n (Kim & DeMets power family)."""
    return alpha * (n / max_runs) ** rho


def calibration_paths(alpha: float) -> int:
    """Simulated experiments per calibration: about 4000 boundary crossings, 2^18..2^21."""
    want = 4000.0 / alpha
    n = 1 << 18
    while n < want and n < (1 << 21):
        n <<= 1
    return n


def _spend_calibrate(P: np.ndarray, alpha: float, rho: float, max_runs: int,
                     exact_first: bool = False) -> np.ndarray:
    """Boundaries b (one per look) with P(first crossing of P <= b by look n) = spend(n)."""
    N, L = P.shape
    alive = np.ones(N, dtype=bool)
    crossed = 0
    out = np.zeros(L)
    for j in range(L):
        n = j + 2
        allowed = int(math.floor(spend(alpha, n, max_runs, rho) * N + 0.5))
        k = allowed - crossed
        col = P[alive, j]
        if j == 0 and exact_first:
            b = spend(alpha, n, max_runs, rho)   # the first look's p is exactly uniform
        elif k <= 0 or col.size == 0:
            b = 0.0
        else:
            k = min(k, col.size)
            if k < col.size:
                part = np.partition(col, [k - 1, k])
                b = 0.5 * (float(part[k - 1]) + float(part[k]))
            else:
                b = float(col.max())
        out[j] = b
        newly = alive & (P[:, j] <= b)
        crossed += int(newly.sum())
        alive &= ~newly
    return out


def _chunks(kind: str, max_runs: int, paths: int):
    """Deterministic standard normals, chunk by chunk: (CHUNK or less, max_runs) arrays."""
    ss = np.random.SeedSequence([CAL_SEED, CAL_VERSION, max_runs, paths, {"welch": 1, "yuen": 2}.get(kind, 0)])
    for i, child in enumerate(ss.spawn((paths + CHUNK - 1) // CHUNK)):
        size = min(CHUNK, paths - i * CHUNK)
        rng = np.random.Generator(np.random.PCG64(child))
        if kind != "one-sample":
            yield rng.standard_normal((size, max_runs)), rng.standard_normal((size, max_runs))
        else:
            yield rng.standard_normal((size, max_runs)), None


def _moments(x: np.ndarray):
    """Running mean and sample variance (ddof 1) for n = 2..M of each row."""
    M = x.shape[1]
    n = np.arange(1, M + 1)
    cs = np.cumsum(x, axis=1)
    mean = cs / n
    dev = np.cumsum(x * x, axis=1) - n * mean * mean
    var = np.maximum(dev, 0.0) / np.maximum(n - 1, 1)
    return mean[:, 1:], var[:, 1:]


def _welch_null_p(zc: np.ndarray, zt: np.ndarray, w: float, cut: float = 1.0) -> np.ndarray:
    """Welch p-values of null paths; entries certainly above ``cut`` are set to 1.

    Exact shortcut: Welch's df lies in [n - 1, 2n - 2] and, for t < 0, the t CDF
    falls as df grows, so p >= F_{2n-2}(t); where F_{2n-2}(t) > cut the p-value
    is above cut and is not computed (the calibration only needs p-values below it).
    """
    from scipy import stats
    mc, vc = _moments(zc * math.sqrt(1.0 - w))
    mt, vt = _moments(zt * math.sqrt(w))
    M = zc.shape[1]
    n = np.arange(2, M + 1)
    diff = mt - mc
    if cut >= 1.0:
        return welch_p(diff, vc, vt, n)[0]
    out = np.ones_like(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / np.sqrt((vc + vt) / n)
    for j, k in enumerate(n):
        sel = np.nonzero(t[:, j] <= stats.t.ppf(cut, 2 * k - 2))[0]
        if sel.size:
            out[sel, j] = welch_p(diff[sel, j], vc[sel, j], vt[sel, j], k)[0]
    return out


def _calibrate_one_sample(alpha: float, rho: float, max_runs: int, paths: int) -> dict:
    n = np.arange(2, max_runs + 1)
    cols = []
    label = f"calibrating one-sample boundaries (M {max_runs})"
    for i, (z, _) in enumerate(_chunks("one-sample", max_runs, paths)):
        m, v = _moments(z)
        cols.append(one_sample_p(m, v, n)[0].astype(np.float64))
        progress.report(label, (i + 1) * CHUNK, paths)
    P = np.concatenate(cols)
    b = _spend_calibrate(P, alpha, rho, max_runs, exact_first=True)
    err = float((P <= b).any(axis=1).mean())
    return {"boundaries": b.tolist(), "error": err}


def _yuen_null_p(zc: np.ndarray, zt: np.ndarray, w: float, cut: float = 1.0) -> np.ndarray:
    return yuen_looks(zc * math.sqrt(1.0 - w), zt * math.sqrt(w))[0]


def _calibrate_welch(alpha: float, rho: float, max_runs: int, paths: int, kind: str = "welch") -> dict:
    cut = min(1.0, 8.0 * alpha) if kind == "welch" else 1.0   # boundaries are far below this
    while True:
        res = _calibrate_welch_cut(alpha, rho, max_runs, paths, cut, kind)
        if cut >= 1.0 or max(res["shape"]) * max(1.0, res["scale"]) < 0.5 * cut:
            del res["shape"]
            return res
        cut = 1.0                        # the shortcut was not safe: do it in full


def _calibrate_welch_cut(alpha: float, rho: float, max_runs: int, paths: int, cut: float,
                         kind: str = "welch") -> dict:
    null_p = _yuen_null_p if kind == "yuen" else _welch_null_p
    label = f"calibrating {kind} boundaries (M {max_runs})"
    work = paths * len(W_GRID)        # pass 1 costs one ratio's worth, pass 2 the others
    # pass 1: shape from exact spending at equal variances (w = 0.5)
    P05 = []
    for i, (zc, zt) in enumerate(_chunks(kind, max_runs, paths)):
        P05.append(null_p(zc, zt, 0.5, cut).astype(np.float32))
        progress.report(label, (i + 1) * CHUNK, work)
    P05 = np.concatenate(P05)
    shape = _spend_calibrate(P05, alpha, rho, max_runs)
    # pass 2: per ratio, each path's smallest p / shape over the looks: it crosses
    # the scaled boundaries lambda * shape iff that minimum is <= lambda.
    with np.errstate(divide="ignore", invalid="ignore"):
        def ratio_min(P):
            r = np.where(shape > 0, P / np.where(shape > 0, shape, 1.0), np.inf)
            return np.nanmin(np.where(np.isnan(r), np.inf, r), axis=1)
        mins = {0.5: ratio_min(P05.astype(np.float64))}
        del P05
        parts = {w: [] for w in W_GRID if w != 0.5}
        for i, (zc, zt) in enumerate(_chunks(kind, max_runs, paths)):
            for w in parts:
                parts[w].append(ratio_min(null_p(zc, zt, w, cut)))
            progress.report(label, paths + (i + 1) * CHUNK * (len(W_GRID) - 1), work)
    for w, chunks in parts.items():
        mins[w] = np.concatenate(chunks)
    k = int(math.floor(alpha * paths))
    lams = {}
    for w, m in mins.items():
        if k <= 0:
            lams[w] = 0.0
            continue
        part = np.partition(m, [k - 1, k])
        lams[w] = 0.5 * (float(part[k - 1]) + float(part[k]))
    lam = min(lams.values())
    b = shape * lam
    errors = {str(w): float((mins[w] <= lam).mean()) for w in W_GRID}
    return {"boundaries": b.tolist(), "error": max(errors.values()), "error_by_w": errors,
            "scale": lam, "shape": shape.tolist()}


def _cache_dir() -> Path | None:
    env = os.environ.get("HARNESS_CACHE")
    if env:
        return Path(env) / "sequential"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "harness" / "sequential"


@functools.lru_cache(maxsize=256)
def boundaries(kind: str, alpha: float, max_runs: int, rho: float) -> tuple[float, ...]:
    """Nominal-p boundaries for looks n = 2..max_runs (index 0 is n = 2).

    ``kind`` is "one-sample" (loss) or "welch" (time). A look crosses when its
    p-value is <= the boundary. Deterministic; cached in memory and on disk
    (``$HARNESS_CACHE/sequential`` or ``~/.cache/harness/sequential``).
    """
    return tuple(calibration(kind, alpha, max_runs, rho)["boundaries"])


def calibration(kind: str, alpha: float, max_runs: int, rho: float) -> dict:
    """The full calibration record (boundaries, simulated error, paths, seed)."""
    name, key = _calibration_key(kind, alpha, max_runs, rho)
    paths = key["paths"]
    data = read_calibration(PACKAGED, name, key, boundaries=max_runs - 1)
    if data is not None:
        return data
    aim = float(alpha) * target(float(alpha), kind)
    if max_runs == 2 and kind == "one-sample":   # one look, an exact p: the fixed design
        res = {"boundaries": [float(alpha)], "error": float(alpha)}
    elif kind == "one-sample":
        res = _calibrate_one_sample(aim, rho, max_runs, paths)
    else:                                     # Welch's p is not exact even at n = 2
        res = _calibrate_welch(aim, rho, max_runs, paths, kind)
    data = {"key": key, **res}
    cache_calibration(name, data)
    return data


def _calibration_key(kind: str, alpha: float, max_runs: int, rho: float) -> tuple[str, dict]:
    """The file name and key of a calibration record."""
    if kind not in ("one-sample", "welch", "yuen"):
        raise ValueError(kind)
    _check_alpha("alpha", alpha)
    _check_max_runs(max_runs)
    key = {"version": CAL_VERSION, "kind": kind, "alpha": repr(float(alpha)), "max_runs": int(max_runs),
           "rho": repr(float(rho)), "paths": calibration_paths(alpha), "seed": CAL_SEED,
           "target": target(float(alpha), kind), "grid": list(W_GRID) if kind != "one-sample" else None}
    if kind == "yuen":
        key["trim"] = TRIM
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"{kind}-a{float(alpha):g}-M{max_runs}-r{float(rho):g}-{digest}.json", key


def calibrated_max_runs(alpha_time: float, alpha_loss: float, futility_alpha: float = FUTILITY_ALPHA,
                        time_test: str = "welch") -> list[int]:
    """The M (most runs per arm) whose four boundary sets are committed or cached: a plan at one
    of them answers without calibrating (seconds, not minutes)."""
    kind = "yuen" if time_test == "trimmed" else "welch"
    need = ((kind, alpha_time, RHO_PASS), (kind, futility_alpha, RHO_FAIL),
            ("one-sample", alpha_loss, RHO_PASS), ("one-sample", futility_alpha, RHO_FAIL))
    out = []
    for M in range(2, MAX_LOOKS + 1):
        if all(read_calibration(PACKAGED, *_calibration_key(k, a, M, r), boundaries=M - 1) is not None
               for k, a, r in need):
            out.append(M)
    return out


def read_calibration(packaged: Path | None, name: str, key: dict, boundaries: int | None = None) -> dict | None:
    """The calibration record NAME made for KEY, from the committed folder or the cache.

    None when neither holds it; a file that does not parse or was made for another key
    (or another number of looks) is passed over, and the record is computed again.
    """
    for where in (packaged, _cache_dir()):
        if where is None:
            continue
        try:
            data = json.loads((where / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("key") == key and (
                boundaries is None or len(data.get("boundaries", [])) == boundaries):
            return data
    return None


def cache_calibration(name: str, data: dict) -> None:
    """Keep a computed calibration record in the cache (atomically)."""
    folder = _cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, folder / name)
    except OSError:
        pass                                  # a cache we cannot write is only slower


def _check_alpha(name: str, a: float) -> None:
    if not isinstance(a, (int, float)) or not (0.0 < float(a) < 0.5):
        raise UserError(f"{name} {a!r}: expected a number in (0, 0.5), e.g. {th.ALPHA_TIME}")


def _check_max_runs(m: int) -> None:
    if not isinstance(m, int) or isinstance(m, bool) or not (2 <= m <= MAX_LOOKS):
        raise UserError(f"max runs {m!r}: expected an integer from 2 to {MAX_LOOKS} "
                        f"(a t-test needs 2 runs per arm)")


# --------------------------------------------------------------------------- decisions
def first_crossing(p_pass: np.ndarray, b_pass, p_fail: np.ndarray, b_fail, max_runs: int):
    """Replay looks row by row: (look number n, decision) per row.

    ``p_pass``/``p_fail`` are (rows, looks available) with look j being n = j + 2.
    decision: 1 pass, -1 fail, 0 open (no crossing yet and the last look not reached).
    n is the look that decided (or the last look seen when open; 0 when none).
    A pass is checked before a futility stop at the same look.
    """
    p_pass = np.atleast_2d(p_pass)
    p_fail = np.atleast_2d(p_fail)
    rows, L = p_pass.shape
    if L == 0:
        return np.zeros(rows, dtype=int), np.zeros(rows, dtype=int)
    bp = np.asarray(b_pass, dtype=float)[:L]
    bf = np.asarray(b_fail, dtype=float)[:L]
    up = p_pass <= bp                 # NaN compares False: no decision from a degenerate look
    dn = p_fail <= bf
    hit = up | dn
    any_hit = hit.any(axis=1)
    j = np.where(any_hit, hit.argmax(axis=1), L - 1)
    r = np.arange(rows)
    dec = np.where(any_hit, np.where(up[r, j], 1, -1), 0)
    final = L + 1 >= max_runs         # the last available look is the final one
    dec = np.where((dec == 0) & final, -1, dec)
    return j + 2, dec


@dataclass
class Look:
    """What the sequential test knows after the latest completed run."""

    need: dict[str, bool]                 # does this arm need more runs
    done: bool                            # no arm needs runs: stop the experiment
    decisions: dict[str, dict]            # treatment -> {"time": {...}, "loss": {...}}
    lines: list[str] = field(default_factory=list)
    reason: str = ""                      # why it stopped, or what it waits for
    new: list[dict] = field(default_factory=list)   # decisions first made by this look


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _sort(records: list) -> list:
    if records and all(getattr(r, "order", None) is not None for r in records):
        return sorted(records, key=lambda r: (r.order, r.index))
    return list(records)


_fmt_p = fmt_p   # the one p-value format of every output (formats.py)


def read_journal(saved: dict | None) -> list[dict]:
    """The decisions a stored plan journaled, each checked whole (UserError if not)."""
    journal = [dict(e) for e in (saved or {}).get("decisions") or []]
    for e in journal:
        if not ({"hypothesis", "criterion", "decision", "result"} <= set(e)
                and e["criterion"] in ("time", "loss") and e["decision"] in ("pass", "fail")):
            raise UserError(f"saved sequential plan: decision {e!r} is incomplete; restore "
                            f"sequential.json from a copy")
    return journal


def settle(stored: dict, h: str, crit: str, d: dict, runs: dict, **fields) -> tuple[dict, dict | None]:
    """A criterion's decision as journaled: a stored one is final and stands; a new pass or
    fail comes back with its journal entry (``fields``: the statistic and boundary it names)."""
    old = stored.get((h, crit))
    if old is not None:
        return {**old["result"], "line": d["line"]}, None
    if d["decision"] == "open":
        return d, None
    return d, {"hypothesis": h, "criterion": crit, "decision": d["decision"], "look": d.get("look", 0),
               "runs": runs, **fields, "why": d["why"], "result": {k: v for k, v in d.items() if k != "line"}}


def diverged_fail(recs: list, bad: int) -> dict:
    """The loss decision when run ``bad`` (0-based) diverged before any boundary was crossed."""
    rid = getattr(recs[bad], "run_id", "?")
    return {"decision": "fail", "why": f"run {bad + 1} ({rid}) diverged (loss NaN): "
                                       f"a diverged run fails the loss criterion",
            "look": bad + 1, "n": bad + 1, "line": f"run {rid} diverged"}


def _decide(d: dict, dec: int, stat: str, passed: str, futile: str, ran_out: str) -> dict:
    """A criterion's decision from its first boundary crossing (1 pass, -1 fail, 0 open)."""
    if dec == 1:
        d.update(decision="pass", why=passed)
    elif dec == -1 and d["p_fail"] <= d["fail_boundary"]:
        d.update(decision="fail", why=futile)
    elif dec == -1:
        d.update(decision="fail", why=ran_out)   # not passed by the last look
    else:
        d.update(decision="open", why=stat)
    d["line"] = stat
    return d


class SequentialPlan:
    """The stopping rule of ``--until-decisive``: pure, deterministic, resume-safe.

    ``look(records)`` takes the completed runs (status ok or diverged) of every
    hypothesis in launch order and says which arms need more runs and why.
    """

    def __init__(self, control: str, treatments: list[str], alpha_time: float = th.ALPHA_TIME,
                 alpha_loss: float = th.ALPHA_LOSS, target_loss: float = th.TARGET_LOSS,
                 min_effect: float = th.MIN_EFFECT, max_runs: int = th.RUNS, futility_alpha: float = FUTILITY_ALPHA,
                 saved: dict | None = None, time_test: str = "welch") -> None:
        treatments = list(treatments)
        if not treatments:
            raise UserError("--until-decisive needs at least one treatment besides the control")
        if control in treatments:
            raise UserError(f"hypothesis {control} is both the control and a treatment")
        _check_alpha("alpha_time", alpha_time)
        _check_alpha("alpha_loss", alpha_loss)
        _check_alpha("futility_alpha", futility_alpha)
        _check_max_runs(max_runs)
        if not _finite(min_effect) or min_effect < 0:
            raise UserError(f"min_effect {min_effect!r}: expected seconds >= 0")
        if not _finite(target_loss):
            raise UserError(f"target_loss {target_loss!r}: expected a number, e.g. {th.TARGET_LOSS}")
        self.control = control
        self.treatments = treatments
        self.alpha_time = float(alpha_time)
        self.alpha_loss = float(alpha_loss)
        self.target_loss = float(target_loss)
        self.min_effect = float(min_effect)
        self.max_runs = int(max_runs)
        self.futility_alpha = float(futility_alpha)
        if time_test not in TIME_TESTS:
            raise UserError(f"time_test {time_test!r}: expected one of {', '.join(TIME_TESTS)}")
        self.time_test = time_test
        # decisions in the order they were made; once made, final (sequential.json keeps them)
        self.journal = read_journal(saved)
        if saved is not None:
            self._load_bounds(saved)
        else:
            M = self.max_runs
            kind = "yuen" if time_test == "trimmed" else "welch"
            self.time_pass = np.array(boundaries(kind, self.alpha_time, M, RHO_PASS))
            self.time_fail = np.array(boundaries(kind, self.futility_alpha, M, RHO_FAIL))
            self.loss_pass = np.array(boundaries("one-sample", self.alpha_loss, M, RHO_PASS))
            self.loss_fail = np.array(boundaries("one-sample", self.futility_alpha, M, RHO_FAIL))

    # -- persistence (store it beside the results for a resume that can never drift) ----
    def to_dict(self) -> dict:
        return {"method": METHOD, "version": CAL_VERSION, "control": self.control,
                "treatments": self.treatments, "alpha_time": self.alpha_time,
                "alpha_loss": self.alpha_loss, "target_loss": self.target_loss,
                "min_effect": self.min_effect, "max_runs": self.max_runs,
                "futility_alpha": self.futility_alpha, "rho_pass": RHO_PASS, "rho_fail": RHO_FAIL,
                "time_test": self.time_test,
                "boundaries": {"time_pass": list(map(float, self.time_pass)),
                               "time_fail": list(map(float, self.time_fail)),
                               "loss_pass": list(map(float, self.loss_pass)),
                               "loss_fail": list(map(float, self.loss_fail))},
                "decisions": [dict(e) for e in self.journal]}

    @classmethod
    def from_dict(cls, d: dict) -> "SequentialPlan":
        try:
            return cls(d["control"], d["treatments"], d["alpha_time"], d["alpha_loss"], d["target_loss"],
                       d["min_effect"], d["max_runs"], d.get("futility_alpha", FUTILITY_ALPHA), saved=d,
                       time_test=d.get("time_test", "welch"))
        except (KeyError, TypeError) as e:
            raise UserError(f"saved sequential plan is incomplete ({e}); restore sequential.json from a copy") from None

    def _load_bounds(self, d: dict) -> None:
        b = d.get("boundaries") or {}
        for name in ("time_pass", "time_fail", "loss_pass", "loss_fail"):
            arr = np.array(b.get(name, []), dtype=float)
            if arr.shape != (self.max_runs - 1,):
                raise UserError(f"saved sequential plan: boundaries.{name} has {arr.size} values, "
                                f"expected {self.max_runs - 1}; restore sequential.json from a copy")
            setattr(self, name, arr)

    # -- the look -----------------------------------------------------------------------
    def _time(self, ctimes: list[float], ttimes: list[float], chosts: list[str] | None = None,
              thosts: list[str] | None = None) -> dict:
        M = self.max_runs
        L = max(0, min(len(ctimes), len(ttimes), M) - 1)
        if L == 0:
            return {"decision": "open", "why": f"needs 2 runs per arm ({len(ctimes)} + {len(ttimes)} so far)",
                    "look": 0, "line": f"pair {min(len(ctimes), len(ttimes))}/{M}: needs 2 runs per arm"}
        c = np.asarray(ctimes[:L + 1], dtype=float)
        t = np.asarray(ttimes[:L + 1], dtype=float)
        n = np.arange(2, L + 2)
        test = "Welch"
        diff = np.array([t[:k].mean() - c[:k].mean() for k in n])
        if chosts is not None and thosts is not None and len(set(chosts[:L + 1]) | set(thosts[:L + 1])) > 1:
            # runs span nodes: the blocked statistic at every look (bench/bench_blocked.py: error rates)
            from harness.analysis import blocked
            test = "stratified Welch by node"
            bts = [blocked.stratified(list(zip(chosts[:k], ctimes[:k])), list(zip(thosts[:k], ttimes[:k])))
                   for k in n]
            diff = np.array([b.delta for b in bts])
            tstat = np.array([b.t for b in bts])
            pp = np.array([b.p if b.se > 0 else math.nan for b in bts])   # no spread: no decision
            pf = np.array([_t_upper((b.delta + self.min_effect) / b.se, b.df) if b.se > 0 else math.nan
                           for b in bts])
        elif self.time_test == "trimmed":
            test = "Yuen trimmed"
            pp, pf, tstat = (x[0] for x in yuen_looks(c[None], t[None], self.min_effect))
        else:
            vc = np.array([_spread_var(c[:k]) for k in n])
            vt = np.array([_spread_var(t[:k]) for k in n])
            pp, pf, tstat = welch_p(diff, vc, vt, n, self.min_effect)
        (k,), (dec,) = first_crossing(pp[None], self.time_pass, pf[None], self.time_fail, M)
        j = k - 2
        d = {"look": int(k), "n": int(k), "diff": float(diff[j]), "t": float(tstat[j]),
             "p": float(pp[j]), "boundary": float(self.time_pass[j]),
             "p_fail": float(pf[j]), "fail_boundary": float(self.time_fail[j])}
        stat = (f"pair {k}/{M}: diff {diff[j]:+.4f} s, {test} t {tstat[j]:.2f}, p {_fmt_p(pp[j])} "
                f"(pass if <= {_fmt_p(self.time_pass[j])}); p not faster by {self.min_effect:g} s "
                f"{_fmt_p(pf[j])} (fail if <= {_fmt_p(self.time_fail[j])})")
        at = f"at pair {k} (diff {diff[j]:+.4f} s)"
        return _decide(d, dec, stat,
                       passed=f"faster: {test} p {_fmt_p(pp[j])} <= {_fmt_p(self.time_pass[j])} {at}",
                       futile=f"not faster by {self.min_effect:g} s: p {_fmt_p(pf[j])} <= "
                              f"{_fmt_p(self.time_fail[j])} {at}",
                       ran_out=f"not shown faster by the last look (pair {M}): "
                               f"p {_fmt_p(pp[j])} > {_fmt_p(self.time_pass[j])}")

    def _loss(self, recs: list) -> dict:
        M = self.max_runs
        losses = [float(r.val_loss) if _finite(r.val_loss) and r.status != "diverged" else math.nan
                  for r in recs]
        # a diverged run fails the criterion at its own look, unless a pass came first:
        # its NaN poisons every look from it on, so no boundary is crossed after it
        bad = next((i for i, x in enumerate(losses) if math.isnan(x)), None)
        L = max(0, min(len(losses), M) - 1)
        if L == 0 and bad is None:
            return {"decision": "open", "why": f"needs 2 runs ({len(losses)} so far)", "look": 0,
                    "line": f"run {len(losses)}/{M}: needs 2 runs"}
        if L > 0:
            x = np.asarray(losses[:L + 1], dtype=float) - self.target_loss
            n = np.arange(2, L + 2)
            m = np.array([x[:k].mean() for k in n])
            v = np.array([_spread_var(x[:k]) for k in n])
            pp, pf, tstat = one_sample_p(m, v, n)
            (k,), (dec,) = first_crossing(pp[None], self.loss_pass, pf[None], self.loss_fail, M)
            if bad is None or (dec != 0 and k <= bad):
                j = k - 2
                mean = m[j] + self.target_loss
                d = {"look": int(k), "n": int(k), "mean": float(mean), "t": float(tstat[j]),
                     "p": float(pp[j]), "boundary": float(self.loss_pass[j]), "p_fail": float(pf[j]),
                     "fail_boundary": float(self.loss_fail[j])}
                stat = (f"run {k}/{M}: mean {mean:.5f} vs {self.target_loss:g}, t {tstat[j]:.2f}, p below "
                        f"{_fmt_p(pp[j])} (pass if <= {_fmt_p(self.loss_pass[j])}); p above {_fmt_p(pf[j])} "
                        f"(fail if <= {_fmt_p(self.loss_fail[j])})")
                at = f"at run {k} (mean {mean:.5f})"
                return _decide(d, dec, stat,
                               passed=f"below {self.target_loss:g}: p {_fmt_p(pp[j])} <= "
                                      f"{_fmt_p(self.loss_pass[j])} {at}",
                               futile=f"above {self.target_loss:g}: p {_fmt_p(pf[j])} <= "
                                      f"{_fmt_p(self.loss_fail[j])} {at}",
                               ran_out=f"not shown below {self.target_loss:g} by the last look "
                                       f"(run {M}): p {_fmt_p(pp[j])} > {_fmt_p(self.loss_pass[j])}")
        return diverged_fail(recs, bad)

    def look(self, records: dict[str, list]) -> Look:
        """Decide from the completed runs (status ok/diverged) per hypothesis, in launch order.

        A criterion decided by an earlier look of this plan (``self.journal``, stored in
        sequential.json) keeps that decision: runs that finish later are shown, never
        flip it. New decisions are appended to the journal and listed in ``Look.new``.
        """
        M = self.max_runs
        recs = {name: [r for r in _sort(records.get(name, []) or []) if r.status in ("ok", "diverged")]
                for name in [self.control, *self.treatments]}
        ctimes = [float(r.train_time_s) for r in recs[self.control] if _finite(r.train_time_s)]
        chosts = [getattr(r, "host", None) or "?" for r in recs[self.control] if _finite(r.train_time_s)]
        decisions: dict[str, dict] = {}
        lines: list[str] = []
        new: list[dict] = []
        stored = {(e["hypothesis"], e["criterion"]): e for e in self.journal}
        for h in self.treatments:
            ttimes = [float(r.train_time_s) for r in recs[h] if _finite(r.train_time_s)]
            thosts = [getattr(r, "host", None) or "?" for r in recs[h] if _finite(r.train_time_s)]
            fresh = {"time": self._time(ctimes, ttimes, chosts, thosts), "loss": self._loss(recs[h])}
            decisions[h] = {}
            for crit, d in fresh.items():
                d, entry = settle(stored, h, crit, d, {self.control: len(recs[self.control]), h: len(recs[h])},
                                  statistic=d.get("t"), p=d.get("p"), boundary=d.get("boundary"))
                if entry is not None:
                    self.journal.append(entry)
                    new.append(entry)
                fresh[crit] = d
                decisions[h][crit] = {k: v for k, v in d.items() if k != "line"}
            for crit, d in fresh.items():
                if d["decision"] == "open":
                    lines.append(f"{h} {crit}: {d['line']} -> open")
                else:
                    lines.append(f"{h} {crit}: {d['decision'].upper()} - {d['why']}")
        need = {self.control: False}
        for h in self.treatments:
            crit = [decisions[h][c]["decision"] for c in ("time", "loss")]
            lost = "fail" in crit          # a lost cause: nothing more can make it pass
            need[h] = not lost and "open" in crit and len(recs[h]) < M
            if not lost and crit[0] == "open" and len(recs[self.control]) < M:
                need[self.control] = True
        done = not any(need.values())
        waiting = [h for h, v in need.items() if v]
        failed = [f"{h} {c}" for h in self.treatments for c in ("time", "loss")
                  if decisions[h][c]["decision"] == "fail"]
        if done:
            opened = [f"{h} {c}" for h in self.treatments for c in ("time", "loss")
                      if decisions[h][c]["decision"] == "open"
                      and "fail" not in (decisions[h]["time"]["decision"], decisions[h]["loss"]["decision"])]
            if opened:
                reason = (f"stop: {M} runs per arm reached with {', '.join(opened)} undecided "
                          f"(runs without a usable time or loss)")
            elif failed and any(decisions[h][c]["decision"] == "open"
                                for h in self.treatments for c in ("time", "loss")):
                reason = f"stop: {', '.join(failed)} failed, so the other criterion cannot matter"
            else:
                reason = "stop: every criterion is decided"
                if all(len(recs[n]) < M for n in recs):
                    reason += f" before the maximum of {M} runs per arm"
        else:
            stopped = [h for h, v in need.items() if not v]
            reason = "continue: " + ", ".join(f"{h} ({len(recs[h])}/{M})" for h in waiting) + " need runs"
            if stopped:
                reason += "; stopped: " + ", ".join(stopped)
        lines.append(reason)
        return Look(need=need, done=done, decisions=decisions, lines=lines, reason=reason, new=new)

    def replay(self, records: dict[str, list]) -> Look:
        """The look a fresh plan (no stored decisions) makes on these records."""
        fresh = SequentialPlan.from_dict({**self.to_dict(), "decisions": []})
        return fresh.look(records)


def disagreements(journal: list[dict], replayed: Look) -> list[str]:
    """Warnings where replaying the logs decides otherwise than the stored decisions."""
    out = []
    for e in journal:
        h, c = e["hypothesis"], e["criterion"]
        r = replayed.decisions.get(h, {}).get(c, {})
        if (r.get("decision"), r.get("look")) != (e["decision"], e.get("look")):
            out.append(f"warning: {h} {c}: stored decision {e['decision'].upper()} at look {e.get('look')}, "
                       f"replaying the logs gives {str(r.get('decision')).upper()} at look {r.get('look')} "
                       f"(runs finished out of order, or records changed); the stored decision stands")
    return out






def replay_stored(saved: dict, records: dict[str, list]) -> tuple[Look, list[str]]:
    """The look of a stored plan on the stored records: stored decisions stand; warnings
    where a replay of the logs from scratch decides otherwise."""
    from harness.design.borrow_seq import plan_from_dict   # every kind of stored plan
    plan = plan_from_dict(saved)
    if not hasattr(plan, "replay"):    # a sweep's decider keeps no journal of decisions
        return plan.look(records), []
    stored = [dict(e) for e in plan.journal]
    look = plan.look(records)
    return look, disagreements(stored, plan.replay(records))


def verdict(look: Look, treatment: str) -> str:
    """'pass' when both criteria passed, 'fail' when one failed, else 'open'."""
    d = look.decisions[treatment]
    crit = (d["time"]["decision"], d["loss"]["decision"])
    if "fail" in crit:
        return "fail"
    return "pass" if crit == ("pass", "pass") else "open"
