"""Golden files: every output format (text, markdown, json, csv) and stderr, on a results
folder and on plain folders of logs. ``UPDATE_GOLDEN=1`` rewrites them; review the diff."""
import os
import sys
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = ROOT / "tests" / "golden"
sys.path.insert(0, str(FIXTURES))
import analyze_builders as B  # noqa: E402
import damaged_logs as D  # noqa: E402
from make_record_logs import H0_LOSSES, H0_TIMES, H1_LOSSES, H1_TIMES  # noqa: E402

FORMATS = ("text", "markdown", "json", "csv")
SUFFIX = {"text": "txt", "markdown": "md", "json": "json", "csv": "csv"}


def check_golden(name: str, text: str):
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"output differs from {path} (UPDATE_GOLDEN=1 regenerates)"


def _cost(train_s: float, i: int) -> dict:
    """What a run on 8 GPUs cost (result.json schema 2): start-up 60 s or so, final validation 5 s."""
    phases = {"to_first_output_s": 4.0, "warmup_s": 50.0 + i, "to_first_step_s": 60.0 + i,
              "between_steps_s": 3.0, "train_s": train_s, "after_last_step_s": 5.0, "teardown_s": 0.5}
    wall = 60.0 + i + 3.0 + train_s + 5.0
    return dict(gpu_s=round(8 * wall, 3), gpus_used=8, phases=phases, wall_s=wall)


def _results_folder(where: Path) -> str:
    """An experiment's results: a retried slot, a failed and an interrupted attempt, drift-free;
    the H1 runs carry their cost (schema 2), the H0 runs none (records of schema 1)."""
    h0 = [dict(status="ok", val_loss=l, train_time_s=t, order=2 * i, host="node-a")
          for i, (l, t) in enumerate(zip(H0_LOSSES, H0_TIMES))]
    h1 = [dict(status="ok", val_loss=l, train_time_s=t, order=2 * i + 1, host="node-a", **_cost(t, i))
          for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))]
    h1[3] = dict(h1[3], attempt=2)
    h1.append(dict(status="failed", index=3, attempt=1, exit_code=1,
                   message="exit code 1; stopped early: last validation at step 750, expected 1575; "
                           "the script said: RuntimeError: CUDA error: an illegal memory access"))
    h1.append(dict(status="interrupted", index=5, attempt=2))
    B.write_results(where / "untie-ve", {"H0": (1600, h0), "H1": (1575, h1)}, runs=10)
    return "untie-ve"


def _run(capsys, *argv):
    code = main(["analyze", *map(str, argv)], prog="analyze.py")
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", FORMATS)
def test_results_folder_golden(capsys, tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)          # relative paths: the output does not name tmp
    src = _results_folder(tmp_path)
    code, out, err = _run(capsys, src, "--gate", "--format", fmt)
    assert code == 0
    check_golden(f"results_gate.{SUFFIX[fmt]}", out)
    check_golden(f"results_gate.{SUFFIX[fmt]}.stderr", err)


@pytest.mark.parametrize("fmt", FORMATS)
def test_record_logs_golden(capsys, monkeypatch, fmt):
    monkeypatch.chdir(ROOT)
    code, out, err = _run(capsys, "tests/fixtures/record_logs", "--group-by", "steps", "--format", fmt)
    assert code == 0
    check_golden(f"record_logs.{SUFFIX[fmt]}", out)
    check_golden(f"record_logs.{SUFFIX[fmt]}.stderr", err)


def _damaged(tmp_path: Path) -> list[str]:
    D.write_all(tmp_path / "damaged")
    B.write_group(tmp_path / "record", H0_LOSSES[:5], H0_TIMES[:5], steps=100)
    return ["record=record", "damaged logs=damaged"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_damaged_logs_golden(capsys, tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, *_damaged(tmp_path), "--format", fmt)
    assert code == 0
    check_golden(f"damaged_logs.{SUFFIX[fmt]}", out)
    check_golden(f"damaged_logs.{SUFFIX[fmt]}.stderr", err)


def test_errors_golden(capsys, tmp_path, monkeypatch):
    """stderr of bad input: every line a user would see, then exit code 2."""
    monkeypatch.chdir(tmp_path)
    for i in range(2):
        B.write_log(tmp_path / "crashed" / f"r{i}.txt", stop_at=500 + i, seed=i)
    (tmp_path / "empty").mkdir()
    lines = []
    for argv in (["crashed"], ["H0=crashed", "H1=empty"], ["nope"], ["a\tb=crashed"],
                 ["crashed", "--control", "H9"]):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and out == ""
        lines.append(f"$ analyze {' '.join(argv)}\n{err}")
    check_golden("errors.stderr", "".join(lines))
