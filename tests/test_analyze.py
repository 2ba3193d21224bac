"""``harness analyze`` end to end: the golden record table, the gate, sources, bad input."""
import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = ROOT / "tests" / "golden"
RECORD = "tests/fixtures/record_logs"          # relative: paths in the output stay short
RECORD_ARGS = [RECORD, "--group-by", "steps", "--control", "1600"]
sys.path.insert(0, str(FIXTURES))
import analyze_builders as B  # noqa: E402
from make_record_logs import H0_LOSSES, H0_TIMES, H1_LOSSES, H1_TIMES  # noqa: E402

# statistics.md: the reference table, numbers only (the groups here are named by steps)
REFERENCE_ROWS = [
    "10   1600  98.1066  0.0904    0.0000     nan  3.2778  0.0010    0.0000  0.0000",
    "10   1575  97.7141  0.0533   -0.3925  0.0000  3.2784  0.0009    0.0006  0.0002",
]


def run(capsys, *argv):
    code = main(["analyze", *map(str, argv)], prog="analyze.py")
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def check_golden(name: str, text: str):
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"output differs from {path} (UPDATE_GOLDEN=1 regenerates)"


# ---------------------------------------------------------------- the record

def test_record_golden_text_with_gate(capsys, in_root):
    code, out, err = run(capsys, *RECORD_ARGS, "--gate")
    assert code == 0 and err == ""
    check_golden("record_logs_gate.txt", out)


def test_record_table_equals_reference_at_every_digit(capsys, in_root):
    code, out, _ = run(capsys, *RECORD_ARGS)
    lines = out.splitlines()
    assert lines[0] == ("                   Runs  Steps   Time μ  Time σ  Time +/-  Time p  "
                        "Loss μ  Loss σ  Loss +/-  Loss p")
    assert [l[17:].strip() for l in lines[1:3]] == REFERENCE_ROWS
    assert lines[1].startswith("1600 ") and lines[2].startswith("1575 ")
    assert f"  losses = {H0_LOSSES}" in out and f"  times  = {H0_TIMES}" in out
    assert f"  losses = {H1_LOSSES}" in out and f"  times  = {H1_TIMES}" in out
    assert out.count("  (n = 10)") == 2


def test_record_readme_passed_over_and_duplicate_counted_once(capsys, in_root):
    _, out, _ = run(capsys, *RECORD_ARGS)
    dup = [l for l in out.splitlines() if "duplicate log" in l]
    assert len(dup) == 1 and "counted once" in dup[0] and "-copy.txt" in dup[0]
    assert "README" not in out


def test_record_via_the_script_in_a_fresh_interpreter():
    t = subprocess.run([sys.executable, "analyze.py", *RECORD_ARGS, "--gate"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert t.returncode == 0, t.stderr
    assert t.stdout == (GOLDEN / "record_logs_gate.txt").read_text()


def test_scipy_pandas_matplotlib_not_imported_for_the_table():
    code = ("import sys, io, contextlib\nfrom harness.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['analyze', {RECORD!r}, '--group-by', 'steps'])\n"
            "print(sorted(m for m in ('scipy', 'pandas', 'matplotlib', 'numpy') if m in sys.modules))")
    t = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert t.stdout.strip() == "[]", t.stderr


def test_markdown_is_a_pasteable_table(capsys, in_root):
    code, out, _ = run(capsys, *RECORD_ARGS, "--format", "markdown", "--gate")
    lines = out.splitlines()
    assert lines[0] == "|  | Runs | Steps | Time μ | Time σ | Time +/- | Time p | Loss μ | Loss σ | Loss +/- | Loss p |"
    assert lines[2] == "| 1600 | 10 | 1600 | 98.1066 | 0.0904 | 0.0000 | nan | 3.2778 | 0.0010 | 0.0000 | 0.0000 |"
    assert lines[3] == "| 1575 | 10 | 1575 | 97.7141 | 0.0533 | -0.3925 | 0.0000 | 3.2784 | 0.0009 | 0.0006 | 0.0002 |"
    assert "```" in out and f"  losses = {H1_LOSSES}" in out and "**gate: PASS**" in out


def test_json_round_trips_through_the_csv(capsys, in_root):
    _, js, _ = run(capsys, *RECORD_ARGS, "--format", "json")
    _, cs, _ = run(capsys, *RECORD_ARGS, "--format", "csv")
    data = json.loads(js)
    assert data["control"] == "1600" and data["target_loss"] == 3.28
    assert data["hypotheses"][0]["time_p"] is None            # NaN is null
    assert set(data["gate"]) >= {"passed", "reasons"}
    rows = list(csv.DictReader(io.StringIO(cs)))
    for h in data["hypotheses"]:
        mine = [r for r in rows if r["group"] == h["name"] and r["status"] in ("ok", "diverged")]
        assert [float(r["val_loss"]) for r in mine] == h["losses"]
        assert [float(r["train_time_s"]) for r in mine] == h["times"]
        assert [r["source"] for r in mine] == h["sources"]
        assert len(mine) == h["runs"]
        keys = {"name", "runs", "steps", "time_mean", "time_std", "time_delta", "time_p", "loss_mean",
                "loss_std", "loss_delta", "loss_p", "losses", "times", "failed", "sources"}
        assert keys <= set(h)
    assert data["hypotheses"][1]["time_mean"] == pytest.approx(sum(H1_TIMES) / 10)


def test_named_sources_and_globs(capsys, in_root, tmp_path):
    a = B.write_group(tmp_path / "a", H0_LOSSES, H0_TIMES)
    b = B.write_group(tmp_path / "b", H1_LOSSES, H1_TIMES, steps=1575, seed=50)
    (tmp_path / "b" / "notes.md").write_text("step:1575/1575 val_loss:3.0 train_time:1ms\n")
    code, out, _ = run(capsys, f"base={tmp_path / 'a'}", f"untied={tmp_path / 'b' / 'run*.txt'}", "--gate")
    assert code == 0
    assert out.splitlines()[1].startswith("base ") and out.splitlines()[2].startswith("untied ")
    assert [l[17:].strip() for l in out.splitlines()[1:3]] == REFERENCE_ROWS
    assert len(a) == len(b) == 10


def test_plain_folder_grouped_by_subfolder(capsys, tmp_path):
    B.write_group(tmp_path / "logs" / "H1", H1_LOSSES, H1_TIMES, steps=1575, seed=50)
    B.write_group(tmp_path / "logs" / "H0", H0_LOSSES, H0_TIMES)
    code, out, _ = run(capsys, tmp_path / "logs", "--control", "H0")
    assert code == 0
    assert [l[17:].strip() for l in out.splitlines()[1:3]] == REFERENCE_ROWS
    code, out, _ = run(capsys, tmp_path / "logs")       # first group (sorted) is the default control
    assert out.splitlines()[1].startswith("H0 ")


# ---------------------------------------------------------------- results folders

def _ok(loss, t, order, **kw):
    return dict(status="ok", val_loss=loss, train_time_s=t, order=order, **kw)


def _experiment(tmp_path, h1_records=None, **kw):
    h0 = [_ok(l, t, 2 * i) for i, (l, t) in enumerate(zip(H0_LOSSES, H0_TIMES))]
    h1 = h1_records or [_ok(l, t, 2 * i + 1) for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))]
    return B.write_results(tmp_path / "untie-ve", {"H0": (1600, h0), "H1": (1575, h1)}, runs=10, **kw)


def test_results_folder_uses_spec_defaults_and_attempts(capsys, tmp_path):
    h1 = [_ok(l, t, 2 * i + 1) for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))]
    h1[3] = dict(h1[3], attempt=2)
    h1.append(dict(status="failed", index=3, attempt=1, message="exit code 1: CUDA error", exit_code=1))
    h1.append(dict(status="interrupted", index=5, attempt=2))
    root = _experiment(tmp_path, h1, target_loss=3.2785)
    code, out, _ = run(capsys, root, "--gate", "--format", "json")
    data = json.loads(out)
    assert data["control"] == "H0" and data["target_loss"] == 3.2785
    h = data["hypotheses"][1]
    assert h["runs"] == 10 and h["failed"] == 1 and h["times"] == H1_TIMES
    assert h["failed_runs"][0]["status"] == "failed"
    assert any("failed run: H1 (failed)" in n for n in data["gate"]["notes"])
    # loss 3.2784 is not below 3.2785 at p < 0.01: the spec's target is used
    assert code == 1 and not data["gate"]["passed"]
    assert any(" loss " in r for r in data["gate"]["reasons"])
    code, out, _ = run(capsys, root, "--gate", "--target-loss", "3.28")   # the flag wins
    assert code == 0 and "gate: PASS" in out


def test_results_drift_warning_from_run_order(capsys, tmp_path):
    times = sorted(H1_TIMES)
    h1 = [_ok(l, t, 2 * i + 1) for i, (l, t) in enumerate(zip(H1_LOSSES, times))]
    code, out, _ = run(capsys, _experiment(tmp_path, h1))
    assert "drift: H1 time rises with run order" in out and "drift: H0" not in out


def test_results_slot_that_never_succeeded_fails_the_steps_criterion(capsys, tmp_path):
    h1 = [_ok(l, t, 2 * i + 1) for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))][:9]
    h1.append(dict(status="timeout", index=9, attempt=1, message="killed after 600 s"))
    code, out, _ = run(capsys, _experiment(tmp_path, h1), "--gate")
    assert code == 1
    assert "FAIL  H1  steps" in out and "has no result" in out


def test_results_diverged_run_is_data_and_fails(capsys, tmp_path):
    h1 = [_ok(l, t, 2 * i + 1) for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))]
    h1[4] = dict(h1[4], status="diverged", val_loss=None)
    code, out, _ = run(capsys, _experiment(tmp_path, h1), "--gate")
    assert code == 1
    row = out.splitlines()[2]
    assert row.split()[:2] == ["H1", "10"] and row.split()[7] == "nan"
    assert "FAIL  H1  diverged  1 diverged" in out and "FAIL  H1  loss" in out
    assert "PASS  H1  time" in out


def test_results_hardware_mismatch(capsys, tmp_path):
    h1 = [_ok(l, t, 2 * i + 1, gpus={"names": ["NVIDIA H200"] * 8, "count": 8})
          for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))]
    code, out, _ = run(capsys, _experiment(tmp_path, h1), "--gate")
    assert code == 1 and "FAIL  H1  hardware" in out and "8x NVIDIA H200" in out


def test_results_holm_with_several_treatments(capsys, tmp_path):
    h0 = [_ok(l, t, 3 * i) for i, (l, t) in enumerate(zip(H0_LOSSES, H0_TIMES))]
    h1 = [_ok(l, t, 3 * i + 1) for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))]
    h2 = [_ok(l, t + 0.35, 3 * i + 2) for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))]
    root = B.write_results(tmp_path / "three", {"H0": (1600, h0), "H1": (1575, h1), "H2": (1575, h2)})
    code, out, _ = run(capsys, root, "--gate")
    assert "Holm p" in out and code == 1          # H2 is not faster
    assert "FAIL  H2  time" in out and "PASS  H1  time" in out


def test_results_parent_folder_is_refused(capsys, tmp_path):
    _experiment(tmp_path)
    code, _, err = run(capsys, tmp_path)
    assert code == 2 and "holds experiments" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------- gate on plain logs

def test_gate_fails_on_one_gpu_against_eight(capsys, tmp_path):
    B.write_group(tmp_path / "H0", H0_LOSSES, H0_TIMES)
    B.write_group(tmp_path / "H1", H1_LOSSES, H1_TIMES, steps=1575, gpus=1, seed=50)
    code, out, _ = run(capsys, f"H0={tmp_path / 'H0'}", f"H1={tmp_path / 'H1'}", "--gate")
    assert code == 1
    assert "FAIL  H1  hardware  H1: 1x NVIDIA H100 80GB HBM3; H0: 8x NVIDIA H100 80GB HBM3" in out
    assert "hardware differs between groups: H0: 8x NVIDIA H100 80GB HBM3; H1: 1x" in out
    B.write_log(tmp_path / "H1" / "eight.txt", steps=1575, seed=77)
    code, out, _ = run(capsys, f"H0={tmp_path / 'H0'}", f"H1={tmp_path / 'H1'}")
    assert "H1 mixes hardware: 1x NVIDIA H100 80GB HBM3 (10 runs), 8x NVIDIA H100 80GB HBM3 (1 run)" in out


def test_gate_fails_on_a_log_that_stopped_early(capsys, tmp_path):
    B.write_group(tmp_path / "H0", H0_LOSSES, H0_TIMES)
    B.write_group(tmp_path / "H1", H1_LOSSES, H1_TIMES, steps=1575, seed=50)
    B.write_log(tmp_path / "H1" / "crashed.txt", steps=1575, stop_at=1400, seed=99)
    code, out, _ = run(capsys, tmp_path, "--control", "H0", "--gate")
    assert code == 1
    assert "no final result:" in out and "crashed.txt" in out
    assert "1 log without a final result counted as failed runs" in out
    assert "FAIL  H1  steps     20 of 21 runs" in out and "stopped at 1400/1575" in out
    assert "(n = 10; 1 failed not counted)" in out


def test_group_with_one_run_shows_numbers_and_fails_the_gate(capsys, tmp_path):
    B.write_group(tmp_path / "H0", H0_LOSSES, H0_TIMES)
    B.write_group(tmp_path / "H1", H1_LOSSES[:1], H1_TIMES[:1], steps=1575, seed=50)
    code, out, err = run(capsys, tmp_path, "--gate")
    assert code == 1 and err == ""
    row = out.splitlines()[2].split()
    assert row[:4] == ["H1", "1", "1575", "97.7150"] and row[6] == "nan"
    assert "FAIL  H1  runs      1 run, control 10: insufficient data" in out
    code, out, _ = run(capsys, tmp_path)                 # without --gate: just the numbers
    assert code == 0


def test_gate_with_only_a_control(capsys, tmp_path):
    B.write_group(tmp_path / "H0", H0_LOSSES, H0_TIMES)
    code, out, _ = run(capsys, tmp_path / "H0", "--gate")
    assert code == 1 and "only the control was given" in out


def test_mixed_step_counts_warn(capsys, tmp_path):
    B.write_group(tmp_path / "H0", H0_LOSSES, H0_TIMES)
    B.write_group(tmp_path / "H1", H1_LOSSES[:5], H1_TIMES[:5], steps=1575, seed=50)
    B.write_group(tmp_path / "H1" / "more", H1_LOSSES[5:], H1_TIMES[5:], steps=1550, seed=70)
    _, out, _ = run(capsys, tmp_path, "--control", "H0")
    assert "H1 mixes final steps: 1575 (5 runs), 1550 (5 runs)" in out


# ---------------------------------------------------------------- bad input

def _one_line_error(capsys, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


def test_folder_with_no_logs(capsys, tmp_path):
    (tmp_path / "README.md").write_text("# nothing\n")
    (tmp_path / "notes.txt").write_text("not a log\n")
    assert "no speedrun logs" in _one_line_error(capsys, tmp_path)


def test_logs_without_a_final_result_are_listed_with_a_count(capsys, tmp_path):
    for i in range(3):
        B.write_log(tmp_path / f"r{i}.txt", stop_at=500 + i, seed=i)
    code, out, err = run(capsys, tmp_path)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert sum("no final result:" in l for l in lines) == 3
    assert lines[-1] == "error: none of the 3 runs has a final result (each is listed above)"


def test_dangling_link_is_skipped_with_one_warning_not_the_end(capsys, tmp_path):
    # issue 14: one dangling .txt link stopped the whole analysis
    B.write_group(tmp_path, H0_LOSSES[:2], H0_TIMES[:2])
    os.symlink(tmp_path / "gone", tmp_path / "dangling.txt")
    code, out, err = run(capsys, tmp_path)
    assert code == 0, err
    warned = [l for l in out.splitlines() if "dangling.txt" in l]
    assert len(warned) == 1 and "a symbolic link to nothing" in warned[0]
    assert "(n = 2)" in out


def test_unknown_control(capsys, in_root):
    err = _one_line_error(capsys, *RECORD_ARGS[:-1], "H9")
    assert "--control H9: no such group; the groups are 1600, 1575" in err


def test_missing_source_and_bad_name(capsys, tmp_path):
    assert "no such file or folder" in _one_line_error(capsys, tmp_path / "nope")
    assert "no such file or folder" in _one_line_error(capsys, f"H0={tmp_path / 'nope'}")
    assert "matches no file" in _one_line_error(capsys, f"H0={tmp_path / '*.log'}")
    assert "group name" in _one_line_error(capsys, f"a\tb={tmp_path}")
    assert "group name" in _one_line_error(capsys, f"={tmp_path}")


def test_results_folder_with_no_runs_yet(capsys, tmp_path):
    root = B.write_results(tmp_path / "fresh", {"H0": (1600, []), "H1": (1575, [])})
    assert "has a result yet" in _one_line_error(capsys, root)


def test_broken_result_json(capsys, tmp_path):
    root = _experiment(tmp_path)
    next(root.glob("H1/*/result.json")).write_text("{not json")
    assert "is not valid JSON" in _one_line_error(capsys, root)


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["analyze", "x", "--format", "yaml"])
    assert e.value.code == 2


# ---------------------------------------------------------------- plot

def _png_size(path: Path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plot_of_the_record(capsys, in_root, tmp_path):
    png = tmp_path / "record.png"
    code, out, _ = run(capsys, *RECORD_ARGS, "--plot", png)
    assert code == 0 and out.startswith("                   Runs")
    w, h = _png_size(png)
    assert w > 1000 and h > 400 and png.stat().st_size > 40_000


def test_plot_with_diverged_failed_and_one_run_groups(capsys, tmp_path):
    B.write_group(tmp_path / "H0", H0_LOSSES, H0_TIMES)
    B.write_group(tmp_path / "H1", H1_LOSSES[:4] + [math.nan], H1_TIMES[:5], steps=1575, seed=50)
    B.write_log(tmp_path / "H1" / "crashed.txt", steps=1575, stop_at=900, seed=99)
    B.write_group(tmp_path / "H2", H1_LOSSES[:1], H1_TIMES[:1], steps=1550, seed=80)
    png = tmp_path / "mixed.png"
    code, _, _ = run(capsys, tmp_path, "--control", "H0", "--plot", png, "--gate")
    assert code == 1 and _png_size(png)[0] > 1000


# ---------------------------------------------------------------- sources directly

def test_process_pool_gives_the_same_groups(monkeypatch, in_root):
    from harness.data import sources
    seq = sources.load([RECORD], "steps")
    monkeypatch.setattr(sources, "PARALLEL_BYTES", 1)     # force the pool on 3.8 MB
    par = sources.load([RECORD], "steps")
    assert [(g.name, g.losses, g.times, [r.source for r in g.runs]) for g in par.groups] == \
           [(g.name, g.losses, g.times, [r.source for r in g.runs]) for g in seq.groups]
    assert par.warnings == seq.warnings


def test_plain_logs_become_run_records(tmp_path):
    from harness.data import sources
    B.write_log(tmp_path / "ok.txt", loss=3.2776, time_s=98.081)
    B.write_log(tmp_path / "nan.txt", loss=math.nan, time_s=98.2, seed=1)
    B.write_log(tmp_path / "short.txt", stop_at=700, seed=2)
    g = sources.load([f"X={tmp_path}"]).groups[0]
    recs = {Path(r.source).name: r.record for r in g.runs + g.failed}
    assert recs["ok.txt"].status == "ok" and recs["ok.txt"].train_time_s == 98.081
    assert recs["ok.txt"].gpus == {"names": ["NVIDIA H100 80GB HBM3"] * 8, "count": 8}
    assert recs["ok.txt"].val_curve[-1] == [1600, 3.2776] and recs["ok.txt"].hypothesis == "X"
    assert recs["nan.txt"].status == "diverged" and math.isnan(recs["nan.txt"].val_loss)
    assert recs["short.txt"].status == "failed" and recs["short.txt"].final_step == 700
    assert "stopped early" in recs["short.txt"].message


def test_plot_to_a_missing_folder_or_unknown_format(capsys, in_root, tmp_path):
    assert "its folder does not exist" in _one_line_error(capsys, *RECORD_ARGS, "--plot", tmp_path / "no" / "x.png")
    code, _, err = run(capsys, *RECORD_ARGS, "--plot", tmp_path / "x.xyz")
    assert code == 2 and err.startswith("error: --plot") and len(err.splitlines()) == 1


def test_holm_note_when_only_the_raw_p_passes(capsys, tmp_path):
    h0 = [_ok(l, t, 3 * i) for i, (l, t) in enumerate(zip(H0_LOSSES, H0_TIMES))]
    # a treatment just past alpha_time 0.001 on its own: Holm for 2 treatments doubles p
    h1 = [_ok(l, t + 0.26, 3 * i + 1) for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))]
    h2 = [_ok(l, t, 3 * i + 2) for i, (l, t) in enumerate(zip(H0_LOSSES, H0_TIMES))]
    root = B.write_results(tmp_path / "two", {"H0": (1600, h0), "H1": (1575, h1), "H2": (1600, h2)})
    _, out, _ = run(capsys, root, "--gate", "--format", "json")
    data = json.loads(out)
    h1 = data["hypotheses"][1]
    assert h1["time_p"] < 0.001 <= h1["time_p_holm"]
    assert any(n.startswith("note: H1 time p after Holm") for n in data["gate"]["notes"])


# ---------------------------------------------------------------- committed H100 data

def test_committed_h100_reference_reads_as_a_results_folder(capsys, in_root):
    """results/untie-ve-h100-reduced is real trainer output (issue 5): 5 ok runs per arm,
    the interrupted attempt passed over, one GPU model in both arms."""
    code, out, err = run(capsys, "results/untie-ve-h100-reduced", "--gate")
    assert code == 1 and err == ""  # H1 is slower: the gate fails it on time
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert rows["H0"][1:3] == ["5", "100"] and rows["H1"][1:3] == ["5", "98"]
    assert "PASS  H1  hardware  1x NVIDIA H100 80GB HBM3 in both arms" in out
    assert "FAIL  H1  time" in out


def test_closed_pipe_is_not_a_traceback():
    p = subprocess.Popen([sys.executable, "analyze.py", str(FIXTURES / "record_logs")], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # before the child has printed anything: its writes fail with EPIPE
    err = p.stderr.read().decode()
    assert p.wait() == 141 and "Traceback" not in err, err


# ---------------------------------------------------------------- naming groups (issue 29)

def test_control_by_a_step_count_without_group_by_says_which_grouping_has_it(capsys, in_root):
    err = _one_line_error(capsys, RECORD, "--control", "1600")
    assert err.startswith("error: --control 1600: no such group; the groups are record_logs; ")
    assert "use --group-by steps (the groups would be 1600, 1575)" in err
    err = _one_line_error(capsys, RECORD, "--group-by", "steps", "--control", "record_logs")
    assert "record_logs is a folder of these logs: use --group-by folder" in err
    # a name no grouping has gets the list alone
    err = _one_line_error(capsys, RECORD, "--control", "1234")
    assert err.rstrip().endswith("the groups are record_logs")


def test_name_groups_of_logs_and_control_by_either_name(capsys, in_root):
    for control in ("H0", "1600"):
        code, out, err = run(capsys, RECORD, "--group-by", "steps", "--name", "1600=H0",
                             "--name", "1575=H1", "--control", control)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[1].startswith("H0 ") and lines[2].startswith("H1 ")
        assert [l[17:].strip() for l in lines[1:3]] == REFERENCE_ROWS
        assert "H0:\n  losses = " in out and "1600:" not in out


def test_bad_names_are_one_line(capsys, in_root):
    base = [RECORD, "--group-by", "steps"]
    assert "write OLD=NEW" in _one_line_error(capsys, *base, "--name", "1600")
    assert "1234 is no group" in _one_line_error(capsys, *base, "--name", "1234=H0")
    assert "already names another group" in _one_line_error(capsys, *base, "--name", "1600=H0",
                                                            "--name", "1575=H0")
    assert "the new name" in _one_line_error(capsys, *base, "--name", "1600= H0")


def test_name_refuses_a_results_folders_hypotheses(capsys, tmp_path):
    recs = [{"val_loss": 3.27, "train_time_s": 98.0 + i / 10} for i in range(3)]
    root = B.write_results(tmp_path / "exp", {"H0": (1600, recs), "H1": (1575, recs)})
    err = _one_line_error(capsys, root, "--name", "H0=base")
    assert "named by its experiment" in err


def test_record_folder_with_baseline_and_this_pr_is_two_arms_and_names_them(capsys, tmp_path):
    B.write_group(tmp_path / "rec" / "baseline", H0_LOSSES[:4], H0_TIMES[:4], steps=1600)
    B.write_group(tmp_path / "rec" / "this_pr", H1_LOSSES[:4], H1_TIMES[:4], steps=1575, seed=10)
    code, out, err = run(capsys, tmp_path / "rec")
    assert code == 0, err
    assert [l.split()[0] for l in out.splitlines()[1:3]] == ["baseline", "this_pr"]
    code, out, err = run(capsys, tmp_path / "rec", "--name", "baseline=H0", "--name", "this_pr=H1",
                         "--control", "H0")
    assert code == 0, err
    assert [l.split()[:3] for l in out.splitlines()[1:3]] == [["H0", "4", "1600"], ["H1", "4", "1575"]]
