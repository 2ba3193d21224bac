"""The sequential calibrations committed with the code are current and genuine, and tests
never touch the user's calibration cache.

``harness/design/calibrations/`` holds the boundaries of the common plans, so no test
(and no user of a common plan) pays for a Monte Carlo calibration; after a change to
the calibration, ``python scripts/write_calibrations.py`` rewrites them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.design import sequential as seq

FIX = "rewrite them with: python scripts/write_calibrations.py"


def _packaged() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(seq.PACKAGED.glob("*.json"))}


def _args(record: dict):
    k = record["key"]
    return k["kind"], float(k["alpha"]), int(k["max_runs"]), float(k["rho"])


def test_the_session_cache_is_sealed():
    # this run's own folder (conftest.py), never the user's ~/.cache or $XDG_CACHE_HOME
    root = Path(os.environ.get("HARNESS_CACHE", ""))
    assert root.name.startswith("harness-test-cache-"), f"tests use the cache {root or '(default)'}"
    assert seq._cache_dir() == root / "sequential"


def test_every_committed_calibration_is_what_the_code_reads(tmp_path, monkeypatch):
    entries = _packaged()
    assert {r["key"]["kind"] for r in entries.values()} == {"one-sample", "welch", "yuen"}
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))    # an empty cache: only the packaged files

    def no_simulation(*a, **k):
        raise AssertionError("recomputed")

    for name in ("_calibrate_one_sample", "_calibrate_welch", "_calibrate_welch_cut"):
        monkeypatch.setattr(seq, name, no_simulation)
    stale = []
    for name, record in entries.items():
        try:
            got = seq.calibration(*_args(record))
        except AssertionError:
            stale.append(name)
            continue
        assert got["boundaries"] == record["boundaries"]
    assert not stale, f"{len(stale)} committed calibrations no longer match the code ({stale[0]}, ...); {FIX}"


def test_a_committed_calibration_equals_a_fresh_one(tmp_path, monkeypatch):
    # the cheapest one-sample plan, recomputed from nothing: the files hold real results
    one = [r for r in _packaged().values() if r["key"]["kind"] == "one-sample" and r["key"]["max_runs"] > 2]
    if not one:
        pytest.fail(f"no one-sample calibration is committed; {FIX}")
    record = min(one, key=lambda r: (r["key"]["max_runs"], r["key"]["paths"]))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.setattr(seq, "PACKAGED", None)
    fresh = seq.calibration(*_args(record))
    assert fresh["boundaries"] == record["boundaries"] and fresh["key"] == record["key"]


def test_every_calibration_folder_ships_with_the_package():
    # a folder left out of package-data installs without its files: a plain `pip install`
    # would then calibrate at first use (minutes) instead of reading the committed boundaries
    import tomllib
    root = Path(__file__).resolve().parents[1]
    shipped = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["harness"]
    calib = root / "harness" / "design" / "calibrations"
    files = set(calib.rglob("*.json"))
    assert files
    covered = {p for pat in shipped for p in (root / "harness").glob(pat)}  # '*' stays in one folder
    missing = sorted({p.parent.relative_to(root).as_posix() for p in files - covered})
    assert not missing, f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"
