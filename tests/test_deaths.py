"""Issue #25 (runner): every death named right, a broken arm stops what depends on it,
preflight, a fix keeps what is still valid, and the runner's smaller defects."""
import json
import signal
import sys
import time

from conftest import harness, results_of, scripted, write_experiment
from harness.run.backends.base import Outcome
from harness.run.backends.memory import FakeRun

OOM_LINE = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
            "total capacity of 79.19 GiB of which 1.05 GiB is free.")
OOM_LOG = "Traceback (most recent call last):\n" + OOM_LINE + "\n"
LAYOUT_LOG = ("usage: train_gpt.py [-h] [--ve-layout VE_LAYOUT]\n"
              "train_gpt.py: error: --ve-layout '.12...012' needs at least 6 layers but the model has 4\n")


def _outcome(code=1, message="", timed_out=False):
    return Outcome(exit_code=code, timed_out=timed_out, started_at="", finished_at="", wall_s=1.0,
                   host="h", message=message)


# -- 1. every death named right -------------------------------------------------------------

def test_the_cgroup_probe_reads_v2_and_v1_files(tmp_path):
    from harness.run.deaths import cgroup_oom_kills
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 2\noom_kill 5\n")
    (tmp_path / "cg2").write_text("0::/a/b\n")
    assert cgroup_oom_kills(str(tmp_path / "cg2"), str(tmp_path)) == 5
    (tmp_path / "memory" / "x").mkdir(parents=True)
    (tmp_path / "memory" / "x" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n")
    (tmp_path / "cg1").write_text("4:memory:/x\n0::/\n")
    assert cgroup_oom_kills(str(tmp_path / "cg1"), str(tmp_path)) == 7
    assert cgroup_oom_kills(str(tmp_path / "none"), str(tmp_path)) is None


def test_a_cuda_oom_is_its_own_reason_with_its_figure_and_is_not_retried_before_the_first_step(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory(scripted(H1=FakeRun(log_text=OOM_LOG, failed=True)))
    assert cli("run", exp, "--retries", "2", cwd=tmp_path).returncode == 3
    h1 = [r for r in results_of(tmp_path / "results" / "exp") if r["hypothesis"] == "H1"]
    assert len(h1) == 1 and h1[0]["retryable"] is False
    assert "CUDA out of memory (tried to allocate 2.00 GiB)" in h1[0]["message"]


def test_a_scheduler_oom_state_is_named_out_of_memory_in_the_record(tmp_path):
    from harness.data import spec as specmod
    from harness.logs.logparse import LogSummary
    from harness.run.record import Recorder
    exp = specmod.load(write_experiment(tmp_path, runs=1))
    rec = Recorder(exp, "slurm", tmp_path).build(
        exp.hypothesis("H0"), 0, 1, 0, tmp_path, LogSummary(path=str(tmp_path / "log.txt")), "log.txt",
        _outcome(None, "SLURM job 7 ended in state OUT_OF_MEMORY without reporting a result"), None)
    assert rec.message.startswith("out of memory (the scheduler's OUT_OF_MEMORY state); SLURM job 7")


def test_retry_policy_of_deaths():
    from harness.run.retry import retryable
    o = _outcome()
    assert not retryable(OOM_LINE, False, o, None)                 # the same batch on the same card
    assert retryable(OOM_LINE, True, o, None)                      # mid-run: once
    assert not retryable(OOM_LINE, True, o, OOM_LINE)              # ... not twice
    assert retryable("", False, _outcome(-9), None)                # SIGKILL
    assert retryable("", False, _outcome(1, "out of memory: the kernel's OOM killer ended a process"), None)
    assert retryable("BlockingIOError: [Errno 11] Resource temporarily unavailable", False, o, None)
    assert retryable("OSError: [Errno 12] Cannot allocate memory", False, o, None)
    assert retryable("", False, _outcome(None, "could not start: [Errno 11] Resource temporarily unavailable"), None)
    assert not retryable("train_gpt.py: error: --ve-layout '.12...012' needs at least 6 layers but the "
                         "model has 4", False, o, None)
    assert not retryable("ValueError: bad shape", False, o, None)  # before the first step: it repeats
    assert retryable("ValueError: bad shape", True, o, None)       # it had trained


def test_a_mid_run_cuda_oom_is_retried_once(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory(scripted(H1=FakeRun(failed=True, error=OOM_LINE)))
    assert cli("run", exp, "--retries", "3", cwd=tmp_path).returncode == 3
    h1 = [r for r in results_of(tmp_path / "results" / "exp") if r["hypothesis"] == "H1"]
    assert [r["retryable"] for r in h1] == [True, False]


def test_a_transient_fork_failure_is_retried_and_then_runs(tmp_path):
    once = tmp_path / "once"
    once.mkdir()
    exp = write_experiment(tmp_path, runs=1, h1_args={"mode": "eagain"},
                           extra_defaults=f'env = {{ ONCE_DIR = "{once}" }}')
    out = harness("run", exp, "--retries", "1", "--no-preflight", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    h1 = [r for r in results_of(tmp_path / "results" / "exp") if r["hypothesis"] == "H1"]
    assert [r["status"] for r in h1] == ["failed", "ok"] and h1[0]["retryable"] is True


# -- 2. a broken arm stops what depends on it -----------------------------------------------

def _broken_treatment(tmp_path, cli, *flags, runs=6):
    exp = write_experiment(tmp_path, name="seq", runs=runs)
    cli.backend = cli.memory(scripted(H1=FakeRun(log_text=LAYOUT_LOG, failed=True, exit_code=2)))
    out = cli("run", exp, "--plain", *flags, cwd=tmp_path)
    return out, cli.backend.launched


def test_a_broken_treatment_stops_the_control_at_once_with_its_error_line(tmp_path, cli):
    out, launched = _broken_treatment(tmp_path, cli)
    assert out.returncode == 3, out.stderr
    assert launched == [("H0", 0, 1), ("H1", 0, 1)]        # not 5 more control runs
    last = out.stderr.strip().splitlines()[-1]
    assert "needs at least 6 layers but the model has 4" in last and "H1 #0" in last, last
    assert "no treatment is left to compare it with" in out.stderr


def test_a_broken_treatment_stops_the_control_under_until_decisive_and_anytime(tmp_path, cli):
    for flag in ("--until-decisive", "--anytime"):
        folder = tmp_path / flag.strip("-")
        folder.mkdir()
        out, launched = _broken_treatment(folder, cli, flag)
        assert out.returncode == 3, (flag, out.stderr)
        assert launched == [("H0", 0, 1), ("H1", 0, 1)], (flag, launched)
        assert "needs at least 6 layers" in out.stderr.strip().splitlines()[-1]


def test_a_broken_control_stops_every_treatment(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=3)
    cli.backend = cli.memory(scripted(H0=FakeRun(log_text=LAYOUT_LOG, failed=True, exit_code=2)))
    out = cli("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 3 and cli.backend.launched == [("H0", 0, 1)], out.stderr
    assert "its control cannot run" in out.stderr


def test_with_several_treatments_a_broken_one_stops_only_itself(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=3)
    text = exp.read_text() + '\n[[hypothesis]]\nname = "H2"\nsteps = 18\nargs = { num_iterations = 18 }\n'
    exp.write_text(text)
    cli.backend = cli.memory(scripted(steps={"H2": 18},
                                      H1=FakeRun(log_text=LAYOUT_LOG, failed=True, exit_code=2)))
    out = cli("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    arms = [k[0] for k in cli.backend.launched]
    assert arms.count("H1") == 1 and arms.count("H0") == 3 and arms.count("H2") == 3


# -- 5. the runner's smaller defects ------------------------------------------------------------

class _Os:
    """``os`` for one module, with some calls replaced."""

    def __init__(self, **calls):
        import os
        self._os, self._calls = os, calls

    def __getattr__(self, name):
        return self._calls.get(name) or getattr(self._os, name)


def _one_line(out, *needles, progress=False):
    lines = out.stderr.strip().splitlines()
    return (out.returncode == 2 and (progress or len(lines) == 1) and lines[-1].startswith("error: ")
            and "Traceback" not in out.stderr and all(n in lines[-1] for n in needles)), out.stderr


def test_a_full_disk_at_the_lock_names_the_lock_file(tmp_path, cli, monkeypatch):
    import errno
    from harness.data import store

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(store, "os", _Os(write=full))
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    out = cli("run", exp, cwd=tmp_path)
    ok, err = _one_line(out, str(tmp_path / "results" / "exp" / ".lock"), "No space left")
    assert ok, err


def test_a_full_disk_at_a_mirror_link_names_the_link_not_the_experiment_file(tmp_path, cli, monkeypatch):
    import errno
    from harness.run import attempt

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))
    monkeypatch.setattr(attempt, "os", _Os(symlink=full))
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    out = cli("run", exp, cwd=tmp_path)
    ok, err = _one_line(out, "script-files", "No space left", progress=True)
    assert ok, err
    assert f"error: {exp}:" not in out.stderr


def test_a_busy_entry_while_tidying_keeps_the_run(tmp_path, cli, monkeypatch):
    import errno
    from pathlib import Path

    def busy(self):
        raise OSError(errno.EBUSY, "Device or resource busy", str(self))
    monkeypatch.setattr(Path, "rmdir", busy)
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert [r["status"] for r in results_of(tmp_path / "results" / "exp")] == ["ok", "ok"]


def test_an_empty_results_flag_is_refused(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    ok, err = _one_line(cli("run", exp, "--results", "", cwd=tmp_path), "--results")
    assert ok, err
    assert not (tmp_path / "results").exists()


def test_a_stop_before_the_runner_starts_still_says_how_to_resume(tmp_path, cli, monkeypatch):
    import os
    from harness.cli import run as runmod
    load = runmod.load_experiment

    def stop_then_load(args):
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            raise AssertionError("SIGTERM would kill the runner here")
        os.kill(os.getpid(), signal.SIGTERM)
        return load(args)
    monkeypatch.setattr(runmod, "load_experiment", stop_then_load)
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 143, out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"stopped by SIGTERM; resume with: harness run {exp}"


def test_a_second_sigterm_during_the_clean_up_keeps_the_stopped_line(tmp_path, cli):
    import os
    exp = write_experiment(tmp_path, runs=1)

    def first(backend, handle):
        if backend.polls == 1:
            os.kill(os.getpid(), signal.SIGTERM)
    backend = cli.memory(scripted(H0=FakeRun(polls=10)), on_poll=first)
    cancel = backend.cancel

    def cancel_twice(handle):
        os.kill(os.getpid(), signal.SIGTERM)     # the second one, while the runs end
        cancel(handle)
    backend.cancel = cancel_twice
    cli.backend = backend
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 143, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM; stopped H0 #0") and "resume with" in last, last


def test_sighup_stops_keeps_and_names_the_resume_command(tmp_path):
    import subprocess
    import os
    from conftest import ROOT
    exp = write_experiment(tmp_path, runs=1, h0_args={"step_sleep": 0.2})
    res = tmp_path / "results" / "exp"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(exp), "--no-preflight"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not any("step:1/" in p.read_text() for p in res.glob("H0/*/log.txt")):
        assert time.monotonic() - t0 < 30
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 129, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGHUP; stopped H0 #0") and f"resume with: harness run {exp}" in last
    rec = json.loads((res / "H0" / "000-1" / "result.json").read_text())
    assert rec["status"] == "interrupted" and rec["wall_s"] > 0.1    # its real wall time


def test_the_live_line_ends_before_the_stop_message():
    import io
    from harness.run import events as ev
    from harness.run.progress import Progress
    out = io.StringIO()
    p = Progress(stream=out, live=True)
    p.on_tick(ev.Tick(jobs=(("H0", 0, 3, 20),)))
    p.end_line()
    assert out.getvalue().endswith("\n") and "step 3/20" in out.getvalue()


def test_an_attempt_its_runner_left_records_its_real_wall_time(tmp_path, cli):
    import os
    from datetime import datetime, timedelta, timezone
    from harness.run.backends.memory import RunnerKilled
    exp = write_experiment(tmp_path, runs=1)

    def die(backend, handle):
        raise RunnerKilled
    cli.backend = cli.memory(scripted(H0=FakeRun(polls=5)), on_poll=die)
    try:
        cli("run", exp, cwd=tmp_path)
    except RunnerKilled:
        pass
    run_dir = tmp_path / "results" / "exp" / "H0" / "000-1"
    launch = json.loads((run_dir / "launch.json").read_text())
    start = datetime.now(timezone.utc) - timedelta(seconds=100)
    launch["started_at"] = start.isoformat()
    (run_dir / "launch.json").write_text(json.dumps(launch))
    os.utime(run_dir / "log.txt", (start.timestamp() + 60, start.timestamp() + 60))
    cli.backend.on_poll = None
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "interrupted" and abs(rec["wall_s"] - 60) < 1, rec["wall_s"]


# -- 3. preflight -------------------------------------------------------------------------------

def test_preflight_stops_a_broken_treatment_before_any_run(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=4)
    cli.backend = cli.memory(scripted(H1=FakeRun(log_text=LAYOUT_LOG, failed=True, exit_code=2)),
                             preflight=True)
    out = cli("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    assert cli.backend.preflights == ["H0", "H1"] and cli.backend.launched == []
    last = out.stderr.strip().splitlines()[-1]
    assert "H1's preflight" in last and "needs at least 6 layers but the model has 4" in last, last
    res = tmp_path / "results" / "exp"
    assert "needs at least 6 layers" in (res / "preflight" / "H1" / "log.txt").read_text()
    assert results_of(res) == [] and not list((res / "preflight").rglob("result.json"))


def test_preflight_passes_once_per_distinct_command_and_only_for_a_new_folder(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=2, h0_args={"base_time": 10.0},
                           h1_args={"num_iterations": 20, "base_time": 10.0})
    text = exp.read_text().replace("steps = 18", "steps = 20")
    exp.write_text(text + '\n[[hypothesis]]\nname = "H2"\nsteps = 18\nargs = { num_iterations = 18 }\n')
    cli.backend = cli.memory(scripted(steps={"H1": 20, "H2": 18}), preflight=True)
    out = cli("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert cli.backend.preflights == ["H0", "H2"]          # H1 runs H0's very command
    assert "preflight H0, H1: ok" in out.stderr and len(cli.backend.launched) == 6
    res = tmp_path / "results" / "exp"
    assert sorted(p.name for p in (res / "preflight").iterdir()) == ["H0", "H2"]
    assert len(results_of(res)) == 6                        # the preflights are no runs
    out = cli("run", exp, "--runs", "3", "--plain", cwd=tmp_path)   # not a new folder: none
    assert out.returncode == 0 and cli.backend.preflights == ["H0", "H2"], out.stderr
    out = cli("run", exp, "--runs", "3", "--preflight", "--plain", cwd=tmp_path)   # asked: again
    assert cli.backend.preflights == ["H0", "H2", "H0", "H2"]
    assert (res / "preflight" / "H0.2" / "log.txt").exists()


def test_no_preflight_and_a_backend_that_cannot_stop_early(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory(preflight=True)
    assert cli("run", exp, "--no-preflight", cwd=tmp_path).returncode == 0
    assert cli.backend.preflights == []
    folder = tmp_path / "other"
    folder.mkdir()
    exp = write_experiment(folder, runs=1)
    cli.backend = cli.memory()                               # it cannot preflight
    out = cli("run", exp, "--preflight", "--plain", cwd=folder)
    assert out.returncode == 0 and "preflight H0: skipped: the memory backend cannot stop" in out.stderr


def test_a_script_without_step_lines_cannot_be_stopped_early_and_is_said_so(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    silent = FakeRun(log_text="training...\n", exit_code=0)
    cli.backend = cli.memory(scripted(H0=silent), preflight=True)
    out = cli("run", exp, "--plain", cwd=tmp_path)
    assert "preflight H0: skipped" in out.stderr and "cannot be stopped early" in out.stderr, out.stderr
    assert ("H0", 0, 1) in cli.backend.launched               # the runs go ahead


def test_preflight_end_to_end_costs_one_start_up_and_stops_at_the_first_step(tmp_path):
    exp = write_experiment(tmp_path, runs=3, h0_args={"step_sleep": 0.3}, h1_args={"mode": "layout"})
    t0 = time.monotonic()
    out = harness("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    assert time.monotonic() - t0 < 5.0                       # H0's 6 s of steps were not run
    res = tmp_path / "results" / "exp"
    h0 = (res / "preflight" / "H0" / "log.txt").read_text()
    assert "step:0/20" in h0 and "step:20/20" not in h0
    assert results_of(res) == [] and not list(res.glob("H*/*"))
    assert "needs at least 6 layers" in out.stderr.strip().splitlines()[-1]


# -- 4. a fix keeps what is still valid -----------------------------------------------------------

def test_a_change_of_one_arm_keeps_the_others_finished_runs_and_says_they_were_not_interleaved(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=2, h1_args={"mode": "ok"})
    cli.backend = cli.memory()
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    res = tmp_path / "results" / "exp"
    h0_before = {p: p.read_bytes() for p in res.glob("H0/*/result.json")}
    assert len(h0_before) == 2
    write_experiment(tmp_path, runs=2, h1_args={"mode": "ok", "tag": "fixed"})   # H1's args only
    assert cli("run", exp, "--dry-run", cwd=tmp_path).returncode == 0    # as the run does
    out = cli("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert {p: p.read_bytes() for p in res.glob("H0/*/result.json")} == h0_before   # kept, untouched
    assert sorted(k[0] for k in cli.backend.launched) == ["H0", "H0", "H1", "H1", "H1", "H1"]
    assert sorted(p.parent.name for p in (res / "superseded" / "1" / "H1").glob("*/result.json")) == [
        "000-1", "001-1"]
    assert (res / "superseded" / "1" / "spec.json").exists() and not (res / "superseded" / "1" / "H0").exists()
    assert "the spec changed for H1 only" in out.stderr and "finished runs of H0 are kept" in out.stderr
    spec = json.loads((res / "spec.json").read_text())
    assert spec["kept"] == [{"superseded": "superseded/1", "changed": ["H1"], "kept": {"H0": 2}}]
    assert "were not interleaved" in out.stdout                       # the table's warning
    table = cli("analyze", res, "--format", "json", cwd=tmp_path)
    kinds = [w["kind"] for w in json.loads(table.stdout)["warnings"]]
    assert "not-interleaved" in kinds
    # more runs later keep the note
    assert cli("run", exp, "--runs", "3", cwd=tmp_path).returncode == 0
    assert json.loads((res / "spec.json").read_text())["kept"] == spec["kept"]


def test_a_change_of_every_arm_or_of_the_experiment_is_still_refused(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    res = tmp_path / "results" / "exp"
    stored = {p: p.read_bytes() for p in res.rglob("*") if p.is_file() and p.name != ".lock"}
    for kw in ({"extra_defaults": 'env = { X = "1" }'}, {"extra_exp": "seed = 7"},
               {"h0_args": {"tag": "a"}, "h1_args": {"tag": "b"}}):
        write_experiment(tmp_path, runs=1, **kw)
        out = cli("run", exp, cwd=tmp_path)
        assert out.returncode == 2 and "touches every arm" in out.stderr, (kw, out.stderr)
        assert cli("run", exp, "--dry-run", cwd=tmp_path).returncode == 2
    assert {p: p.read_bytes() for p in res.rglob("*") if p.is_file() and p.name != ".lock"} == stored


def test_a_sequential_folder_keeps_its_refusal_of_a_changed_arm(tmp_path, cli):
    exp = write_experiment(tmp_path, name="seq", runs=6)
    cli.backend = cli.memory()
    assert cli("run", exp, "--until-decisive", cwd=tmp_path).returncode == 0
    write_experiment(tmp_path, name="seq", runs=6, h1_args={"tag": "fixed"})
    out = cli("run", exp, "--until-decisive", cwd=tmp_path)
    assert out.returncode == 2 and "sequential plan" in out.stderr, out.stderr
