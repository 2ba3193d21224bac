"""``harness demo``: the CPU-sized H0/H1 smoke experiment, end to end.

Creates the synthetic shards on first use, runs (or resumes) the experiment into
``results/untie-ve-smoke/`` and prints the significance table.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "hypotheses/untie-ve-smoke.toml"


def configure(p) -> None:
    p.add_argument("--runs", type=int, help="runs per hypothesis (default: the file's)")
    p.add_argument("--results", help="results folder (default: results/untie-ve-smoke)")


def ensure_data(data_path: Path) -> None:
    if any(data_path.glob("*train_*.bin")) and any(data_path.glob("*val_*.bin")):
        return
    print(f"creating synthetic shards in {data_path}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "train.data", "synthetic", "--out", str(data_path)],
                   cwd=ROOT, check=True)


def main(args) -> int:
    from harness import cli
    from harness.data import spec

    if not (ROOT / SMOKE).is_file():
        raise UserError(f"{ROOT / SMOKE} not found: the demo runs from a checkout "
                        "(pip install -e . in the repository)")
    results = str(Path(args.results).absolute()) if args.results else None
    os.chdir(ROOT)  # the experiment's paths are relative to the project root
    exp = spec.load(SMOKE, ROOT)
    data = exp.control.env.get("DATA_PATH", "data/synthetic")
    ensure_data(ROOT / data)
    results = results or str(Path("results") / exp.name)
    run_args = ["run", SMOKE, "--results", results] + (["--runs", str(args.runs)] if args.runs is not None else [])
    return cli.main(run_args)  # harness run ends with the table
