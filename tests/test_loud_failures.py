"""Issue #13: failures that are loud and cheap (exit codes, fail fast, nothing lost or stuck)."""
import json
import os
import stat

import pytest

from conftest import harness, results_of, scripted, write_experiment
from harness.run.backends.memory import FakeRun

ARGPARSE_FAILURE = ("usage: fake_train.py [-h] [--num-iterations NUM_ITERATIONS]\n"
                    "fake_train.py: error: unrecognized arguments: --num-iteratons 20\n")
MISSING_FILE = ("Traceback (most recent call last):\n  File \"fake_train.py\", line 31, in <module>\n"
                "    open(\"data/no_such_shard.bin\")\n"
                "FileNotFoundError: [Errno 2] No such file or directory: 'data/no_such_shard.bin'\n")


def _one_line_error(out, *needles):
    lines = out.stderr.strip().splitlines()
    ok = out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") \
        and "Traceback" not in out.stderr
    return ok and all(n in lines[0] for n in needles)


# -- exit codes, the table on stdout ------------------------------------------------------

def test_run_where_nothing_worked_exits_3_naming_how_many_and_the_first_reason(tmp_path):
    exp = write_experiment(tmp_path, runs=1, h0_args={"mode": "crash"}, h1_args={"mode": "crash"})
    out = harness("run", exp, "--retries", "0", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("2 of 2 runs ended without a result; first: H0 #0: failed:"), last
    assert "CUDA error: boom" in last
    assert out.stdout == ""  # no table without a single result


def test_run_help_lists_the_exit_codes(tmp_path, cli):
    assert "exit codes:" in cli("run", "--help", cwd=tmp_path).stdout


def test_run_prints_the_table_on_stdout_and_the_gate_when_asked(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=2)
    out = harness("run", exp, "--gate", cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    analyze = cli("analyze", tmp_path / "results" / "exp", "--gate", cwd=tmp_path)
    assert out.stdout == analyze.stdout and out.returncode == analyze.returncode
    assert "H1" in out.stdout and "[1/4]" not in out.stdout  # progress stays on stderr
    assert "[1/4]" in out.stderr


# -- fail fast, say why ---------------------------------------------------------------------

def test_typo_in_args_is_quoted_and_not_retried_and_progress_counts_runs(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=3, h1_args={"num_iteratons": 20})
    cli.backend = cli.memory(scripted(H1=FakeRun(log_text=ARGPARSE_FAILURE, failed=True, exit_code=2)))
    out = cli("run", exp, "--retries", "2", "--plain", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    res = tmp_path / "results" / "exp"
    h1 = [r for r in results_of(res) if r["hypothesis"] == "H1"]
    assert [r["run_id"] for r in h1] == ["000-1"]  # one launch, not 9 (#25: not two)
    assert "unrecognized arguments: --num-iteratons 20" in h1[0]["message"]
    assert "unrecognized arguments" in h1[0]["error"] and h1[0]["retryable"] is False
    assert "not launched" in out.stderr  # H1 #2 would fail the same way
    counters = [line.split("]")[0] + "]" for line in out.stderr.splitlines() if line.startswith("[")]
    assert all(c.endswith("/6]") for c in counters), counters
    assert "unrecognized arguments" in out.stderr.strip().splitlines()[-1]


def test_a_missing_file_is_not_retried_but_a_cuda_error_is(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory(scripted(H1=FakeRun(log_text=MISSING_FILE, failed=True),
                                      H0=FakeRun(failed=True, error="RuntimeError: CUDA error: boom")))
    assert cli("run", exp, "--retries", "2", cwd=tmp_path).returncode == 3
    recs = results_of(tmp_path / "results" / "exp")
    h0 = [r for r in recs if r["hypothesis"] == "H0"]
    h1 = [r for r in recs if r["hypothesis"] == "H1"]
    assert len(h1) == 1 and "FileNotFoundError" in h1[0]["error"]
    assert len(h0) == 3 and all(r["retryable"] for r in h0)  # CUDA errors may pass


def test_retry_policy_table():
    from harness.run.backends.base import Outcome
    from harness.run.retry import retryable
    o = Outcome(exit_code=1, timed_out=False, started_at="", finished_at="", wall_s=1, host="h")
    assert not retryable("train.py: error: unrecognized arguments: --x 1", False, o, None)
    assert not retryable("ModuleNotFoundError: No module named 'flash'", False, o, None)
    assert not retryable("ValueError: bad shape", False, o, "ValueError: bad shape")  # the same twice
    assert not retryable("ValueError: bad shape", False, o, None)  # no transient before a step (#25)
    assert retryable("", False, o, None)  # it said nothing: nothing says it would repeat
    assert retryable("ModuleNotFoundError: x", True, o, None)  # it had trained: not certain
    assert retryable("RuntimeError: NCCL error: unhandled system error", False, o, None)
    assert retryable("", False, Outcome(None, True, "", "", 1, "h"), None)  # timeout
    assert retryable("FileNotFoundError: x", False, Outcome(-9, False, "", "", 1, "h"), None)  # a signal


# -- the spec: corrected when nothing completed; --dry-run refuses what run refuses ----------

def test_a_corrected_spec_is_taken_when_no_run_completed_and_old_attempts_are_kept(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1, extra_defaults='args = { num_iteratons = 18 }')
    typo = FakeRun(log_text=ARGPARSE_FAILURE, failed=True, exit_code=2)
    cli.backend = cli.memory(scripted(H0=typo, H1=typo))
    assert cli("run", exp, cwd=tmp_path).returncode == 3
    res = tmp_path / "results" / "exp"
    old = {p.relative_to(res): p.read_bytes() for p in res.rglob("*") if p.is_file() and p.name != ".lock"}
    write_experiment(tmp_path, runs=1)
    dry = cli("run", exp, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    cli.backend = cli.memory()
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(r["status"] for r in results_of(res)) == ["ok", "ok"]
    aside = res / "superseded" / "1"
    for rel, data in old.items():  # every old file kept, under its spec
        assert (aside / rel).read_bytes() == data
    assert "num_iteratons" in (aside / "experiment.toml").read_text()


def test_dry_run_refuses_a_changed_spec_and_another_experiments_folder(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    # a change of every arm (one arm's change keeps the others' runs: tests/test_deaths.py)
    write_experiment(tmp_path, runs=1, h0_args={"num_iterations": 19}, h1_args={"num_iterations": 16})
    for extra in ([], ["--dry-run"]):
        assert _one_line_error(cli("run", exp, *extra, cwd=tmp_path), "num_iterations: 18 -> 16")
    other = write_experiment(tmp_path, name="other", runs=1)
    for extra in ([], ["--dry-run"]):
        out = cli("run", other, "--results", tmp_path / "results" / "exp", *extra, cwd=tmp_path)
        assert _one_line_error(out, "another experiment"), out.stderr


# every continuation a sequential or anytime folder refuses: (design of the folder, argv)
SEQUENTIAL_REFUSALS = [
    ("--until-decisive", ["--runs", "8"]),
    ("--until-decisive", []),
    ("--until-decisive", ["--anytime", "--max-runs", "8"]),
    ("--until-decisive", ["--until-decisive", "--max-runs", "8"]),
    ("--until-decisive", ["--until-decisive", "--runs", "8"]),
    ("--anytime", ["--runs", "8"]),
    ("--anytime", ["--until-decisive", "--max-runs", "8"]),
    ("--anytime", ["--anytime", "--max-runs", "2"]),
]


@pytest.mark.parametrize("design,argv", SEQUENTIAL_REFUSALS)
def test_dry_run_refuses_what_a_sequential_or_anytime_folder_refuses(tmp_path, cli, design, argv):
    exp = write_experiment(tmp_path, runs=4)
    cli.backend = cli.memory()
    assert cli("run", exp, design, "--plain", cwd=tmp_path).returncode == 0
    res = tmp_path / "results" / "exp"
    before = results_of(res)
    real = cli("run", exp, *argv, "--plain", cwd=tmp_path)
    dry = cli("run", exp, *argv, "--dry-run", cwd=tmp_path)
    assert _one_line_error(real), real.stderr
    assert _one_line_error(dry) and dry.stderr == real.stderr and dry.stdout == "", dry.stdout
    assert results_of(res) == before
    # the advice never names a command the folder refuses too: every way out it gives
    # for this folder is a new experiment, or a continuation this folder takes
    if "continue it with --anytime" in real.stderr or "already allows" in real.stderr:
        more = cli("run", exp, "--anytime", "--max-runs", "6", "--dry-run", cwd=tmp_path)
        assert more.returncode == 0, more.stderr
    else:
        assert "new experiment" in real.stderr
        assert "use --anytime there" not in real.stderr


def test_the_design_survives_the_loss_of_sequential_json(tmp_path, cli, capsys):
    """Issue 26: `rm sequential.json; harness run EXP --runs 20` was a fixed-sample run."""
    exp = write_experiment(tmp_path, runs=4)
    cli.backend = cli.memory()
    assert cli("run", exp, "--until-decisive", "--plain", cwd=tmp_path).returncode == 0
    res = tmp_path / "results" / "exp"
    spec = json.loads((res / "spec.json").read_text())
    assert spec["schema_version"] == 2
    assert spec["design"] == {"kind": "group-sequential", "borrowed": False, "sweep": False}
    assert cli("analyze", res, "--gate", cwd=tmp_path).returncode == 0
    assert json.loads(cli("analyze", res, "--format", "json", cwd=tmp_path).stdout)["design"] == spec["design"]
    (res / "sequential.json").unlink()
    before = results_of(res)
    for extra in ([], ["--dry-run"]):
        out = cli("run", exp, "--runs", "20", *extra, "--plain", cwd=tmp_path)
        assert _one_line_error(out, "group-sequential", "sequential.json is missing"), out.stderr
    assert results_of(res) == before
    gate = cli("analyze", res, "--gate", cwd=tmp_path)
    assert gate.returncode == 1 and "gate: PASS" not in gate.stdout
    assert "FAIL  H1  design" in gate.stdout and "sequential.json" in gate.stdout
    assert "sequential.json" in cli("analyze", res, cwd=tmp_path).stdout   # warned without --gate too


def test_an_old_spec_without_design_is_read_and_its_design_inferred(tmp_path, cli):
    from harness.data import store
    exp = write_experiment(tmp_path, runs=4)
    cli.backend = cli.memory()
    assert cli("run", exp, "--anytime", "--plain", cwd=tmp_path).returncode == 0
    res = tmp_path / "results" / "exp"
    spec = json.loads((res / "spec.json").read_text())
    del spec["design"]
    spec["schema_version"] = 1
    (res / "spec.json").write_text(json.dumps(spec))
    assert store.read_design(res)["kind"] == "anytime"
    assert cli("analyze", res, cwd=tmp_path).returncode == 0
    assert _one_line_error(cli("run", exp, "--runs", "8", cwd=tmp_path), "anytime")
    assert cli("run", exp, "--anytime", "--max-runs", "5", "--plain", cwd=tmp_path).returncode == 0
    assert json.loads((res / "spec.json").read_text())["design"]["kind"] == "anytime"   # written now


# -- bad values: one line naming file and key, exit 2, nothing launched -----------------------

BAD_VALUES = [
    ("nul in env", {"extra_defaults": 'env = { A = "x\\u0000y" }'}, "env.A"),
    ("nul in args", {"h1_args": {"tag": "a\u0000b"}}, "args.tag"),
    ("huge runs", {"extra_exp": "runs = 1000000000000"}, "experiment.runs"),
    ("nan target", {"extra_exp": "target_loss = nan"}, "experiment.target_loss"),
    ("inf min_effect", {"extra_exp": "min_effect = inf"}, "experiment.min_effect"),
    ("seed in env", {"extra_defaults": 'env = { SEED = "99" }'}, "env.SEED"),
    ("nan in args", {"h1_args": {}, "extra_defaults": "args = { lr = nan }"}, "args.lr"),
]


@pytest.mark.parametrize("label,kw,needle", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_one_line_errors_before_anything_launches(tmp_path, cli, label, kw, needle):
    kw = dict(kw)
    if label == "huge runs":
        exp = write_experiment(tmp_path, runs=1, **kw)
        exp.write_text(exp.read_text().replace("runs = 1\n", "", 1))
    else:
        exp = write_experiment(tmp_path, runs=1, **kw)
    cli.backend = cli.memory()
    out = cli("run", exp, cwd=tmp_path)
    assert _one_line_error(out, needle, str(exp)), out.stderr
    assert cli.backend.launched == []
    assert not (tmp_path / "results").exists()


def test_more_bad_values_names_slurm_time_and_flags(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    text = exp.read_text()
    cases = [
        (text.replace('name = "H1"', 'name = "spec.json"'), "hypothesis #2.name"),
        (text.replace('name = "H1"', 'name = "H1\\n"'), "not safe as a folder name"),
        (text.replace('name = "exp"', 'name = "exp\\n"'), "experiment.name"),
        (text + "\n[slurm]\ntime = -5\n", "slurm.time"),
    ]
    for body, needle in cases:
        exp.write_text(body)
        out = cli("run", exp, cwd=tmp_path)
        assert _one_line_error(out, needle), (needle, out.stderr)
    exp.write_text(text)
    for flags in (["--timeout", "nan"], ["--timeout", "inf"], ["--runs", str(10**12)], ["--slurm-time", "-5"]):
        out = cli("run", exp, *flags, cwd=tmp_path)
        assert _one_line_error(out, flags[0]), (flags, out.stderr)
    assert not (tmp_path / "results").exists()


def test_records_and_the_frozen_spec_never_hold_nan_or_infinity(tmp_path):
    import dataclasses

    from harness.data import spec as specmod
    from harness.records import RunRecord
    from harness.data.store import Store
    rec = RunRecord(run_id="000-1", hypothesis="H0", index=0, seed=0, status="diverged",
                    val_loss=float("nan"), train_time_s=float("inf"), val_curve=[[10, float("-inf")]])
    exp = specmod.load(write_experiment(tmp_path, runs=1), tmp_path)
    # a value the file check refuses, built in code: the writer still emits strict JSON
    exp = dataclasses.replace(exp, target_loss=float("inf"), min_effect=float("nan"))
    Store(tmp_path / "res").freeze(exp, "")
    for text in (rec.to_json(), (tmp_path / "res" / "spec.json").read_text()):
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


@pytest.mark.parametrize("bad", ["[]", '"x"', "null"])
def test_analyze_of_a_record_of_the_wrong_shape_is_one_line(tmp_path, cli, bad):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    rj = tmp_path / "results" / "exp" / "H1" / "000-1" / "result.json"
    rj.write_text(bad)
    for cmd in ("analyze", "status"):
        out = cli(cmd, tmp_path / "results" / "exp", cwd=tmp_path)
        assert _one_line_error(out, str(rj)), (cmd, out.stderr)
    assert rj.read_text() == bad


def test_analyze_of_a_spec_json_of_the_wrong_shape_is_one_line(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    sp = tmp_path / "results" / "exp" / "spec.json"
    for bad in ("[]", '"x"'):
        sp.write_text(bad)
        out = cli("analyze", tmp_path / "results" / "exp", cwd=tmp_path)
        assert _one_line_error(out, str(sp)), out.stderr


def test_analyze_of_a_record_with_a_wrongly_typed_field_is_one_line(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    rj = tmp_path / "results" / "exp" / "H1" / "000-1" / "result.json"
    good = json.loads(rj.read_text())
    for key, value in (("index", "0"), ("val_loss", "3.2"), ("status", "great"), ("attempt", None)):
        data = dict(good)
        data[key] = value
        if value is None:
            data[key] = [1]
        rj.write_text(json.dumps(data))
        out = cli("analyze", tmp_path / "results" / "exp", cwd=tmp_path)
        assert _one_line_error(out, key), (key, out.stderr)


def test_records_are_written_for_the_team_respecting_the_umask(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    res = tmp_path / "results" / "exp"
    cli.backend = cli.memory()
    old = os.umask(0o022)
    try:
        out = cli("run", exp, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        for name in ("spec.json", "experiment.toml", "H0/000-1/result.json", "H0/000-1/launch.json"):
            assert stat.S_IMODE((res / name).stat().st_mode) == 0o644, name
        os.umask(0o077)
        assert cli("run", exp, "--results", "r2", cwd=tmp_path).returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r2" / "spec.json").stat().st_mode) == 0o600


def test_freezing_the_spec_writes_both_files_or_neither(tmp_path, monkeypatch):
    from harness.data import spec as specmod
    from harness.data import store as storemod
    exp_path = write_experiment(tmp_path, runs=1)
    exp = specmod.load(exp_path, tmp_path)
    text = exp_path.read_text()
    real = storemod.atomic_write_text
    for fail_at in (1, 2):
        root = tmp_path / f"res{fail_at}"
        calls = []

        def dying_write(path, data, calls=calls, fail_at=fail_at):
            calls.append(path)
            if len(calls) == fail_at:
                raise KeyboardInterrupt  # the runner is killed at this write
            real(path, data)
        monkeypatch.setattr(storemod, "atomic_write_text", dying_write)
        with pytest.raises(KeyboardInterrupt):
            storemod.Store(root).freeze(exp, text)
        monkeypatch.setattr(storemod, "atomic_write_text", real)
        # whatever was left, spec.json is never there without experiment.toml
        assert (root / "experiment.toml").exists() or not (root / "spec.json").exists()
        storemod.Store(root).freeze(exp, text)  # the next run completes it
        assert (root / "experiment.toml").read_text() == text and (root / "spec.json").exists()


# -- nothing lost, nothing stuck ----------------------------------------------------------------

def _writes_files(workdir):
    """What fake_train.py's "files" mode does: logs of clashing and very long names, a checkpoint."""
    for sub, text in (("a", "from a\n"), ("b", "from b\n")):
        (workdir / "logs" / sub).mkdir(parents=True)
        (workdir / "logs" / sub / "same.txt").write_text(text)
    (workdir / "logs" / ("x" * 250 + ".txt")).write_text("long name\n")
    (workdir / "checkpoint.bin").write_bytes(b"weights")


def test_script_logs_with_clashing_and_long_names_and_its_files_are_all_kept(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory(scripted(H0=FakeRun(script=_writes_files)))
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "results" / "exp" / "H0" / "000-1"
    kept = run_dir / "script-files"
    assert (kept / "logs" / "a" / "same.txt").read_text() == "from a\n"
    assert (kept / "logs" / "b" / "same.txt").read_text() == "from b\n"
    assert (kept / "logs" / ("x" * 250 + ".txt")).read_text() == "long name\n"
    assert (kept / "checkpoint.bin").read_bytes() == b"weights"
    assert not any(p.is_symlink() for p in kept.iterdir())  # the mirror of the root is gone
    assert (tmp_path / "exp.toml").exists()  # ... and not what it pointed to


def test_a_logs_link_made_by_the_script_is_not_followed(tmp_path, cli):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory(scripted(H0=FakeRun(script=lambda wd: os.symlink(outside, wd / "logs"))))
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "results" / "exp" / "H0" / "000-1" / "script-files" / "logs").is_symlink()
    assert (outside / "precious.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]


def test_leftover_temp_files_and_unstarted_attempt_folders_are_cleaned_next_run(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    res = tmp_path / "results" / "exp"
    (res / ".spec.json.abc123.tmp").write_text("{")
    (res / "H0" / "000-1" / ".result.json.x.tmp").write_text("{")
    stuck = res / "H1" / "000-2" / "script-files"
    stuck.mkdir(parents=True)
    os.symlink(tmp_path / "exp.toml", stuck / "exp.toml")
    write_experiment(tmp_path, runs=2)
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    assert not list(res.rglob("*.tmp"))
    assert not (res / "H1" / "000-2").exists() and (tmp_path / "exp.toml").exists()
    assert (res / "H0" / "000-1" / "result.json").exists()


def test_status_shows_a_running_attempt_as_running(tmp_path, cli):
    import contextlib
    import io

    from harness import cli as climod
    exp = write_experiment(tmp_path, runs=1)
    res = tmp_path / "results" / "exp"
    seen = []

    def status(backend, handle):
        if backend.launched == [("H0", 0, 1)] and not seen:   # H0 #0 is running
            with contextlib.redirect_stdout(io.StringIO()) as f:
                assert climod.main(["status", str(res)]) == 0
            seen.append(f.getvalue())
    cli.backend = cli.memory(scripted(H0=FakeRun(polls=3)), on_poll=status)
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    out = seen[0]
    header = out.splitlines()[1].split()
    row = next(line for line in out.splitlines() if line.startswith("H0")).split()
    assert row[header.index("running")] == "1", out
    after = cli("status", res, cwd=tmp_path).stdout
    row = next(line for line in after.splitlines() if line.startswith("H0")).split()
    assert row[header.index("running")] == "0", after
