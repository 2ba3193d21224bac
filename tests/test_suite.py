"""The suite's own rules: SLURM tests sit behind the ``slurm`` marker, apart from the rest."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collected(*args: str) -> int:
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "--strict-markers", "tests/test_slurm.py", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode in (0, 5), p.stdout + p.stderr          # 5: nothing selected
    m = re.search(r"(\d+)(?:/\d+)? tests? collected", p.stdout)
    return int(m.group(1)) if m else 0


def test_slurm_tests_are_left_out_by_default_and_selected_with_the_marker():
    assert collected() == 0
    assert collected("-m", "slurm") >= 10
