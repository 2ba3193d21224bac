"""Regression tests for bugs found in a review of the harness core (runner, store, CLI)."""
import argparse
import io
import shutil

from conftest import STAND_INS, harness, results_of, write_experiment
from harness.cli import demo as cmd_demo
from harness.run.progress import Progress
from harness.records import RunRecord
from harness.run import events as ev


def _one_line_error(out):
    lines = out.stderr.strip().splitlines()
    return out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") \
        and "Traceback" not in out.stderr


def test_run_with_a_corrupt_result_json_is_a_one_line_error_and_keeps_the_file(tmp_path, cli):
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, runs=1)
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    rj = tmp_path / "results" / "exp" / "H0" / "000-1" / "result.json"
    rj.write_text("{not json")
    write_experiment(tmp_path, runs=2)
    out = cli("run", exp, cwd=tmp_path)
    assert _one_line_error(out), out.stderr
    assert str(rj) in out.stderr
    assert rj.read_text() == "{not json"
    assert not (tmp_path / "results" / "exp" / "H0" / "001-1").exists()  # nothing launched


def test_status_with_a_corrupt_result_json_is_a_one_line_error(tmp_path, cli):
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, runs=1)
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    rj = tmp_path / "results" / "exp" / "H1" / "000-1" / "result.json"
    for bad in ("{not json", "[1, 2]", '{"run_id": "000-1"}'):
        rj.write_text(bad)
        out = cli("status", tmp_path / "results" / "exp", cwd=tmp_path)
        assert _one_line_error(out), (bad, out.stderr)
        assert str(rj) in out.stderr and rj.read_text() == bad


def test_malformed_spec_json_is_a_one_line_error_for_status_and_run(tmp_path, cli):
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, runs=1)
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    sp = tmp_path / "results" / "exp" / "spec.json"
    for bad in ("[]", "{}", '"x"'):
        sp.write_text(bad)
        out = cli("status", tmp_path / "results" / "exp", cwd=tmp_path)
        assert _one_line_error(out), (bad, out.stderr)
        out = cli("run", exp, cwd=tmp_path)
        assert _one_line_error(out), (bad, out.stderr)
        assert sp.read_text() == bad


def test_results_path_that_is_a_file_is_a_one_line_error(tmp_path, cli):
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, runs=1)
    f = tmp_path / "afile"
    f.write_text("x")
    out = cli("run", exp, "--results", f, cwd=tmp_path)
    assert _one_line_error(out), out.stderr
    assert f.read_text() == "x"


def test_progress_does_not_crash_on_an_ok_run_without_train_time():
    # "logs of another program with no train_time at all" still finish with a val_loss
    out = io.StringIO()
    p = Progress(out, live=False)
    p(ev.Plan(experiment="e", results="r", total=1, done=0, pending=1))
    rec = RunRecord(run_id="000-1", hypothesis="H0", index=0, seed=0, status="ok",
                    val_loss=3.1, train_time_s=None, wall_s=1.0)
    p(ev.Finish(record=rec, total=1))
    assert "H0 #0: ok val_loss 3.1000" in out.getvalue()


def test_run_of_a_script_without_train_time_is_failed_as_analyze_says(tmp_path, cli):
    # issue 14: one classifier; a final line with no time has no result to time (it was
    # "ok" for the runner and "failed" for analyze)
    from harness.run.backends.memory import FakeRun
    cli.backend = cli.memory(lambda *a: FakeRun(log_text="step:0/5 val_loss:5.0\nstep:5/5 val_loss:3.1\n"))
    exp = write_experiment(tmp_path, runs=1, h0_args={"num_iterations": 5}, h1_args={"num_iterations": 5})
    out = cli("run", exp, cwd=tmp_path)
    assert "Traceback" not in out.stderr, out.stderr
    recs = results_of(tmp_path / "results" / "exp")
    assert recs and {r["status"] for r in recs} == {"failed"}
    assert all("has no train_time" in r["message"] for r in recs)


def test_relative_script_path_with_dotdot_and_spaces_runs(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    other = tmp_path / "other dir"
    other.mkdir()
    shutil.copy(STAND_INS / "fake_train.py", other / "my train.py")
    exp = write_experiment(proj, runs=1, script="../other dir/my train.py")
    out = harness("run", exp, cwd=proj)
    assert out.returncode == 0, out.stderr
    recs = results_of(proj / "results" / "exp")
    assert [r["status"] for r in recs] == ["ok", "ok"], [r["message"] for r in recs]


def test_status_counts_the_runs_asked_for_with_the_runs_flag(tmp_path, cli):
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, runs=1)
    assert cli("run", exp, "--runs", "2", cwd=tmp_path).returncode == 0
    out = cli("status", tmp_path / "results" / "exp", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:4]}
    assert rows["H0"][0] == "2" and rows["H1"][0] == "2", out.stdout  # both runs counted
    # a lower --runs later does not shrink the record of what was planned
    assert cli("run", exp, "--runs", "1", cwd=tmp_path).returncode == 0
    out = cli("status", tmp_path / "results" / "exp", cwd=tmp_path)
    assert "2 runs per hypothesis" in out.stdout


def test_status_reports_the_latest_attempt_when_there_are_ten_or_more(tmp_path, cli):
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, runs=1)
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    res = tmp_path / "results" / "exp"
    shutil.rmtree(res / "H0")
    for attempt in range(1, 11):
        d = res / "H0" / f"000-{attempt}"
        d.mkdir(parents=True)
        status = "failed" if attempt == 10 else "interrupted"
        RunRecord(run_id=d.name, hypothesis="H0", index=0, seed=0, status=status,
                  attempt=attempt).save(d / "result.json")
    out = cli("status", res, cwd=tmp_path)
    row = next(line for line in out.stdout.splitlines() if line.startswith("H0"))
    # ok diverged failed timeout interrupted running unfinished pending attempts
    assert row.split()[1:] == ["0", "0", "1", "0", "0", "0", "0", "0", "10"], out.stdout


def test_experiment_timeout_must_be_positive(tmp_path, cli):
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, runs=1, extra_exp="timeout = 0")
    out = cli("run", exp, cwd=tmp_path)
    assert _one_line_error(out), out.stderr
    assert "experiment.timeout" in out.stderr and str(exp) in out.stderr
    assert not (tmp_path / "results").exists()


def _demo_argv(monkeypatch, tmp_path, **kw):
    calls = []
    monkeypatch.setattr(cmd_demo, "ensure_data", lambda path: None)
    from harness import cli
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(list(argv)) or 0)
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(runs=None, results=None)
    for k, v in kw.items():
        setattr(args, k, v)
    cmd_demo.main(args)
    return calls


def test_demo_relative_results_folder_is_relative_to_the_callers_cwd(monkeypatch, tmp_path):
    calls = _demo_argv(monkeypatch, tmp_path, results="out")
    run = calls[0]
    results = run[run.index("--results") + 1]
    assert results == str(tmp_path / "out")
    assert len(calls) == 1  # the run itself prints the table: once


def test_demo_passes_runs_zero_on_to_be_refused(monkeypatch, tmp_path):
    calls = _demo_argv(monkeypatch, tmp_path, runs=0)
    assert calls[0][-2:] == ["--runs", "0"]
