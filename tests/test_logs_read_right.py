"""Issue 14 through `harness analyze`: every input read, grouping help, warnings a person can act on."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from harness.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import analyze_builders as B  # noqa: E402
import damaged_logs as D  # noqa: E402
from make_record_logs import H0_LOSSES, H0_TIMES, H1_LOSSES, H1_TIMES  # noqa: E402


def run(capsys, *argv):
    code = main(["analyze", *map(str, argv)], prog="analyze.py")
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def _warnings(data, text):
    return [w["message"] for w in data["warnings"] if text in w["message"]]


# ---------------------------------------------------------------- strict values, units, inputs

def test_every_kind_of_log_file_is_read(capsys, tmp_path):
    expect = D.write_all(tmp_path / "g")
    data = as_json(capsys, f"G={tmp_path / 'g'}")
    h = data["hypotheses"][0]
    ok_files = {n for n, e in expect.items() if e.status != "failed"}
    got = {Path(s.split("#")[0]).name for s in h["sources"]}
    assert got == ok_files      # .stdout, .out, .log, .gz, UTF-16 (BOM or not), UTF-8 BOM, CR, CRLF
    by_name = dict(zip((Path(s).name for s in h["sources"]), h["times"]))
    assert by_name["seconds.txt"] == pytest.approx(833.211)   # not 833 ms
    assert by_name["utf16.txt"] == pytest.approx(98.001) and by_name["cr_only.txt"] == pytest.approx(98.004)
    failed = {Path(r["source"]).name: r["message"] for r in h["failed_runs"]}
    assert "cut_mid_number.txt" in failed and "train_time:6 has no unit" in failed["cut_mid_number.txt"]
    assert "cut_zip.log.gz" in failed
    # a run that died before its first step is a failed run, with the script's error
    assert "error: unrecognized arguments: --num-iteratons 20" in failed["argparse_error.txt"]
    assert "ModuleNotFoundError: No module named 'triton'" in failed["import_error.txt"]


def test_empty_log_is_skipped_with_a_warning_and_notes_pass_quietly(capsys, tmp_path):
    B.write_group(tmp_path / "g", H0_LOSSES[:3], H0_TIMES[:3])
    (tmp_path / "g" / "empty.txt").write_bytes(b"")
    (tmp_path / "g" / "notes.txt").write_text("tried lr 0.02 on node 3\n")
    (tmp_path / "g" / "broken.txt.gz").write_bytes(b"\x1f\x8b\x08\x00garbage, not deflate data")
    data = as_json(capsys, f"G={tmp_path / 'g'}")
    assert data["hypotheses"][0]["runs"] == 3 and data["hypotheses"][0]["failed"] == 0
    assert len(_warnings(data, "empty.txt")) == 1 and not _warnings(data, "notes.txt")
    broken = _warnings(data, "broken.txt.gz")
    assert len(broken) == 1 and "gzip data is corrupt" in broken[0]


def test_a_log_cut_mid_number_is_a_failed_run_not_a_fast_one(capsys, tmp_path):
    B.write_group(tmp_path / "g", H0_LOSSES[:3], H0_TIMES[:3])
    text = (tmp_path / "g" / "run00.txt").read_text()
    cut = text[:text.index("step:1600/1600 val_loss")] + "step:1600/1600 val_loss:3.2776 train_time:6"
    (tmp_path / "g" / "run00.txt").write_text(cut)
    data = as_json(capsys, f"G={tmp_path / 'g'}")
    h = data["hypotheses"][0]
    assert h["runs"] == 2 and min(h["times"]) > 90 and h["failed"] == 1
    assert any("run00.txt" in w["message"] and "cut off" in w["message"] for w in data["warnings"])


def test_concatenated_runs_are_split_with_a_warning(capsys, tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "track.txt").write_text("".join(D.log(time_ms=98000.0 + 10 * i) for i in range(12)))
    data = as_json(capsys, f"G={tmp_path / 'g'}")
    h = data["hypotheses"][0]
    assert h["runs"] == 12 and h["times"][0] == 98.0 and h["times"][-1] == 98.11
    warned = _warnings(data, "track.txt")
    assert len(warned) == 1 and "holds 12 runs" in warned[0] and "12 separate runs" in warned[0]


def test_fifo_device_and_bad_links_are_skipped_with_one_warning_each(tmp_path):
    g = tmp_path / "g"
    B.write_group(g, H0_LOSSES[:3], H0_TIMES[:3])
    os.mkfifo(g / "x.txt")
    os.symlink("/dev/null", g / "dev.log")
    os.symlink(g / "gone.txt", g / "dangling.txt")
    os.symlink(g / "loop2.txt", g / "loop1.txt")
    os.symlink(g / "loop1.txt", g / "loop2.txt")
    out = subprocess.run([sys.executable, "analyze.py", str(g)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)      # a FIFO made analyze hang
    assert out.returncode == 0, out.stderr
    for name, why in (("x.txt", "FIFO"), ("dev.log", "a device"), ("dangling.txt", "link to nothing"),
                      ("loop1.txt", "loop"), ("loop2.txt", "loop")):
        lines = [l for l in out.stdout.splitlines() if f"/{name}:" in l]
        assert len(lines) == 1 and "skipped" in lines[0] and why in lines[0], (name, lines)
    assert "(n = 3)" in out.stdout


def test_name_path_matching_no_log_is_an_error_naming_it(capsys, tmp_path):
    B.write_group(tmp_path / "H0", H0_LOSSES[:3], H0_TIMES[:3])
    (tmp_path / "H1").mkdir()
    (tmp_path / "H1" / "README.md").write_text("step:5/5 val_loss:3.0 train_time:5ms\n")
    code, out, err = run(capsys, f"H0={tmp_path / 'H0'}", f"H1={tmp_path / 'H1'}")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert f"H1={tmp_path / 'H1'}: no speedrun logs there" in err


# ---------------------------------------------------------------- grouping

def test_mixed_final_steps_say_the_command_that_splits_them(capsys, tmp_path):
    # one plain folder (no subfolders) with both step counts, as a record folder is
    B.write_group(tmp_path / "rec2", H0_LOSSES, H0_TIMES)
    for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES)):
        B.write_log(tmp_path / "rec2" / f"new{i:02d}.txt", steps=1575, loss=l, time_s=t, seed=50 + i)
    src = str(tmp_path / "rec2")
    _, out, _ = run(capsys, src)
    hint = [l for l in out.splitlines() if "mixes final steps" in l]
    assert len(hint) == 1 and hint[0].endswith(f"split by final step: harness analyze {src} --group-by steps")
    code, out, _ = run(capsys, src, "--group-by", "steps")    # the command it gave works
    assert code == 0 and "mixes final steps" not in out
    assert out.splitlines()[1].startswith("1600 ") and out.splitlines()[2].startswith("1575 ")


def test_group_names_with_spaces_are_accepted_and_quoted(capsys, tmp_path):
    B.write_group(tmp_path / "a", H0_LOSSES, H0_TIMES)
    B.write_group(tmp_path / "b", H1_LOSSES, H1_TIMES, steps=1575, seed=50)
    code, out, err = run(capsys, f"the record={tmp_path / 'a'}", f"lr 0.02={tmp_path / 'b'}",
                         "--control", "the record", "--gate")
    assert code == 0, err
    assert out.splitlines()[1].startswith('"the record" ') and out.splitlines()[2].startswith('"lr 0.02" ')
    assert 'gate: "lr 0.02" vs control "the record"' in out


def test_loss_control_measures_loss_deltas_against_another_group(capsys, tmp_path):
    B.write_group(tmp_path / "H0", H0_LOSSES, H0_TIMES)
    B.write_group(tmp_path / "H1", H1_LOSSES, H1_TIMES, steps=1575, seed=50)
    B.write_group(tmp_path / "base", [x - 0.001 for x in H0_LOSSES], H0_TIMES, seed=80)
    srcs = [f"H0={tmp_path / 'H0'}", f"H1={tmp_path / 'H1'}", f"base={tmp_path / 'base'}"]
    plain = {h["name"]: h for h in as_json(capsys, *srcs)["hypotheses"]}
    data = as_json(capsys, *srcs, "--loss-control", "base")
    h = {h["name"]: h for h in data["hypotheses"]}
    assert data["loss_control"] == "base" and h["base"]["loss_delta"] == 0.0
    assert h["H1"]["loss_delta"] == pytest.approx(plain["H1"]["loss_delta"] + 0.001, abs=1e-9)
    assert h["H1"]["time_delta"] == plain["H1"]["time_delta"]          # time: still against H0
    _, out, _ = run(capsys, *srcs, "--loss-control", "base")
    assert "Loss +/- against base's mean loss" in out
    code, _, err = run(capsys, *srcs, "--loss-control", "nope")
    assert code == 2 and "--loss-control nope: no such group" in err


# ---------------------------------------------------------------- warnings worth reading

def test_outlier_warning_names_the_log_and_says_what_to_do(capsys, tmp_path):
    times = list(H0_TIMES)
    times[3] = 99.9
    paths = B.write_group(tmp_path / "H0", H0_LOSSES, times)
    B.write_group(tmp_path / "H1", H1_LOSSES, H1_TIMES, steps=1575, seed=50)
    _, out, _ = run(capsys, tmp_path)
    flagged = [l for l in out.splitlines() if "outlier" in l]
    assert len(flagged) == 1 and str(paths[3]) in flagged[0] and "read that log" in flagged[0]


def test_no_outlier_warning_on_the_clean_record(capsys):
    code, out, _ = run(capsys, FIXTURES / "record_logs", "--group-by", "steps")
    assert code == 0 and "outlier" not in out


def _results(tmp_path, h1_times):
    n = len(h1_times)
    h0 = [dict(status="ok", val_loss=l, train_time_s=t, order=2 * i) for i, (l, t) in
          enumerate(zip(H0_LOSSES[:n], H0_TIMES[:n]))]
    h1 = [dict(status="ok", val_loss=l, train_time_s=t, order=2 * i + 1) for i, (l, t) in
          enumerate(zip(H1_LOSSES, h1_times))]
    return B.write_results(tmp_path / "exp", {"H0": (1600, h0), "H1": (1575, h1)}, runs=n)


def test_drift_is_not_asserted_when_it_is_not_significant(capsys, tmp_path):
    # the case: Spearman rho +0.70 at n = 5 is p 0.19, and the old warning said
    # "the machine changed during the experiment"
    times = [97.6 + 0.03 * r for r in (1, 2, 5, 3, 4)]
    data = as_json(capsys, _results(tmp_path, times))
    h1 = data["hypotheses"][1]
    assert h1["drift"]["spearman_rho"] == pytest.approx(0.7) and h1["drift"]["p"] == pytest.approx(28 / 120)   # exact: 28 of the 5! orderings
    assert not [w for w in data["warnings"] if w["kind"] == "drift"]


def test_significant_drift_is_stated_with_its_two_sided_p(capsys, tmp_path):
    _, out, _ = run(capsys, _results(tmp_path, sorted(H1_TIMES)))
    drift = [l for l in out.splitlines() if "drift" in l]
    assert len(drift) == 1 and "two-sided p" in drift[0] and "the machine changed" in drift[0]


def test_units_in_headers_and_the_tests_named_in_the_footer(capsys, tmp_path):
    _, out, _ = run(capsys, _results(tmp_path, H1_TIMES))
    lines = out.splitlines()
    assert lines[3].startswith("Time in s;")
    assert "one-sided Welch t-test" in lines[4] and "two-sided Welch p is 2 x min(p, 1 - p)" in lines[4]
    assert "one-sided one-sample t-test" in lines[5] and "target 3.28" in lines[5]
    robust = next(l for l in lines if l.startswith("robust checks"))
    assert "95% interval in s" in robust and "in % of the control's mean time" in robust
    _, md, _ = run(capsys, _results(tmp_path / "md", H1_TIMES), "--format", "markdown")
    assert "one-sided Welch t-test" in md and "one-sample t-test" in md


def test_csv_warnings_go_to_stderr(capsys):
    code, out, err = run(capsys, FIXTURES / "record_logs", "--group-by", "steps", "--format", "csv")
    assert code == 0 and "duplicate log" not in out
    assert err.startswith("warning: duplicate log:")


def test_a_fifo_named_as_the_source_is_an_error_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "x.txt")
    out = subprocess.run([sys.executable, "analyze.py", str(tmp_path / "x.txt")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not a log file or folder" in out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_the_process_pool_reads_the_same(monkeypatch, tmp_path):
    # big trees are parsed in a pool: skips and split runs must come back from it too
    from harness.data import sources
    g = tmp_path / "g"
    B.write_group(g, H0_LOSSES[:3], H0_TIMES[:3])
    (g / "track.txt").write_text(D.log() + D.log(time_ms=97000.0))
    os.symlink(g / "gone.txt", g / "dangling.txt")
    serial = sources.load([str(g)])
    monkeypatch.setattr(sources, "PARALLEL_BYTES", 0)
    pooled = sources.load([str(g)])
    assert pooled.warnings == serial.warnings and len(pooled.warnings) == 3   # + torch versions
    assert pooled.groups[0].times == serial.groups[0].times and len(serial.groups[0].times) == 5
