#!/usr/bin/env python3
"""Recompute the sequential calibrations committed in ``harness/design/calibrations/``.

    python scripts/write_calibrations.py [KIND-aALPHA-MM-rRHO ...]
    python scripts/write_calibrations.py sweep      # the step sweep's (harness/design/calibrations/sweep/)

Run it after changing the calibration (its version, paths, seed, target or grid):
``tests/test_calibrations.py`` fails until the committed files match the code. With
no argument every committed plan is recomputed (Welch at alpha 0.001 takes minutes);
an argument such as ``welch-a0.01-M20-r3`` adds (or recomputes) one plan.
The borrowed-sigma boundaries (``harness/design/borrow_seq.py``) live in
``calibrations/borrowed/``: ``borrowed-KIND-aALPHA-MM-dfDF-rRHO-lLEVEL[-robust]``
(``tests/test_borrow.py`` checks them); ``--borrowed`` recomputes only those.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.design import sequential as seq  # noqa: E402

PLAN = re.compile(r"^(one-sample|welch|yuen)-a([0-9.e-]+)-M(\d+)-r([0-9.]+)")
BORROWED = re.compile(r"^borrowed-(loss|time)-a([0-9.e-]+)-M(\d+)-df([0-9.e+]+|inf)-r([0-9.]+)"
                      r"-l([0-9.]+(?:e-?[0-9]+)?)(-robust)?(?:-|$)")


def plans(args: list[str]) -> list[tuple[str, float, int, float]]:
    names = args or [p.name for p in sorted(seq.PACKAGED.glob("*.json"))]
    out = []
    for name in names:
        m = PLAN.match(name)
        if not m:
            sys.exit(f"{name}: expected KIND-aALPHA-MM-rRHO, e.g. welch-a0.01-M10-r3")
        alpha = float(m[2])
        try:   # a committed file names its exact alpha (alpha / m of a multi-arm family: 0.001 / 3)
            alpha = float(json.loads((seq.PACKAGED / name).read_text())["key"]["alpha"])
        except (OSError, ValueError, KeyError):
            pass
        out.append((m[1], alpha, int(m[3]), float(m[4])))
    return out


def borrowed_plans(args: list[str]) -> list[tuple]:
    from harness.design import borrow_seq
    names = args or [p.name for p in sorted(borrow_seq.PACKAGED.glob("*.json"))]
    out = []
    for name in names:
        m = BORROWED.match(name)
        if not m:
            sys.exit(f"{name}: expected borrowed-KIND-aALPHA-MM-dfDF-rRHO-lLEVEL[-robust], "
                     f"e.g. borrowed-loss-a0.01-M10-df9-r1.5-l0.05-robust")
        out.append((m[1], float(m[2]), int(m[3]), float(m[5]), float(m[4]), float(m[6]), bool(m[7])))
    return out


def write_borrowed(args: list[str]) -> int:
    from harness.design import borrow_seq
    todo = borrowed_plans(args)
    packaged, borrow_seq.PACKAGED = borrow_seq.PACKAGED, None
    packaged.mkdir(parents=True, exist_ok=True)
    for old in ([] if args else sorted(packaged.glob("*.json"))):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HARNESS_CACHE"] = tmp
        for kind, alpha, max_runs, rho, df_b, level, robust in todo:
            borrow_seq.boundaries.cache_clear()
            borrow_seq.calibration(kind, alpha, max_runs, rho, df_b, level, robust)
        for path in sorted((Path(tmp) / "sequential").glob("borrowed-*.json")):
            data = json.loads(path.read_text())
            (packaged / path.name).write_text(json.dumps(data, indent=1) + "\n")
            print(f"{packaged.relative_to(ROOT)}/{path.name}")
    return 0


def sweep_plans() -> int:
    """The step sweep's committed calibrations (harness/design/sweep_seq.py SHIPPED)."""
    from harness.design import sweep_seq
    folder = sweep_seq.PACKAGED
    folder.mkdir(exist_ok=True)
    for old in sorted(folder.glob("*.json")):
        old.unlink()
    packaged, sweep_seq.PACKAGED = sweep_seq.PACKAGED, None
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HARNESS_CACHE"] = tmp
        for steps, alpha, max_runs in sweep_seq.SHIPPED:
            data = sweep_seq.calibration(steps, alpha, max_runs)
            name = sweep_seq.file_name(data["key"])
            (packaged / name).write_text(json.dumps(data, indent=1) + "\n")
            print(f"{packaged.relative_to(ROOT)}/{name}")
    return 0


def main(args: list[str]) -> int:
    if args[:1] == ["--borrowed"]:
        return write_borrowed(args[1:])
    if any(a.startswith("borrowed-") for a in args):
        return write_borrowed(args)
    if args == ["sweep"]:
        return sweep_plans()
    todo = plans(args)
    packaged, seq.PACKAGED = seq.PACKAGED, None          # never read the files being replaced
    for old in ([] if args else sorted(packaged.glob("*.json"))):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HARNESS_CACHE"] = tmp                  # and no user cache either
        for kind, alpha, max_runs, rho in todo:
            seq.calibration(kind, alpha, max_runs, rho)
        for path in sorted((Path(tmp) / "sequential").glob("*.json")):
            data = json.loads(path.read_text())
            (packaged / path.name).write_text(json.dumps(data, indent=1) + "\n")
            print(f"{packaged.relative_to(ROOT)}/{path.name}")
    if not args:
        write_borrowed([])
        sweep_plans()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
