"""The committed calibrations that seed each test run's cache are current and genuine.

``fixtures/calibrations.json`` is what keeps the sequential tests fast on a cold
machine; after a change to the calibration it must be rewritten with
``python tests/fixtures/make_calibrations.py`` (these tests say so when it is stale).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.design import sequential as seq

SEEDS = Path(__file__).resolve().parent / "fixtures" / "calibrations.json"
FIX = "rewrite it with: python tests/fixtures/make_calibrations.py"


def _entries():
    return json.loads(SEEDS.read_text())["files"]


def _args(record: dict):
    k = record["key"]
    return k["kind"], float(k["alpha"]), int(k["max_runs"]), float(k["rho"])


def test_the_session_cache_is_sealed_and_seeded():
    # this run's own folder (conftest.py), never the user's ~/.cache or $XDG_CACHE_HOME
    root = Path(os.environ.get("HARNESS_CACHE", ""))
    assert root.name.startswith("harness-test-cache-"), f"tests use the cache {root or '(default)'}"
    folder = seq._cache_dir()
    assert folder == root / "sequential"
    assert set(_entries()) <= {p.name for p in folder.iterdir()}


def test_every_seed_is_what_the_code_would_read_from_its_cache(tmp_path, monkeypatch):
    entries = _entries()
    assert entries, f"{SEEDS} holds no calibration; {FIX}"
    folder = tmp_path / "sequential"
    folder.mkdir()
    for name, record in entries.items():
        (folder / name).write_text(json.dumps(record))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))

    def no_simulation(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(seq, "_calibrate_one_sample", no_simulation)
    monkeypatch.setattr(seq, "_calibrate_welch", no_simulation)
    stale = []
    for name, record in entries.items():
        try:
            got = seq.calibration(*_args(record))
        except AssertionError:
            stale.append(name)
            continue
        assert got["boundaries"] == record["boundaries"]
    assert not stale, f"{len(stale)} seeds no longer match the calibration code ({stale[0]}, ...); {FIX}"


def test_a_seed_equals_a_fresh_calibration(tmp_path, monkeypatch):
    # the cheapest one-sample seed, recomputed from nothing: the file holds real results
    one = [r for r in _entries().values() if r["key"]["kind"] == "one-sample" and r["key"]["max_runs"] > 2]
    if not one:
        pytest.fail(f"no one-sample calibration among the seeds; {FIX}")
    record = min(one, key=lambda r: (r["key"]["max_runs"], r["key"]["paths"]))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    fresh = seq.calibration(*_args(record))
    assert fresh["boundaries"] == record["boundaries"] and fresh["key"] == record["key"]
