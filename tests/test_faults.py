"""Fault injection: kills at random moments, full and read-only disks, misbehaving trainers.

Each test checks the same promises: nothing stored is lost or changed, no process of a
run outlives it, the error is one line naming the path, and the next run resumes.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, harness, results_of, scripted, write_experiment
from harness.run.backends.base import LaunchSpec
from harness.run.backends.memory import FakeRun, RunnerKilled
from test_runner import _alive, _spawn, _wait_for

FAST_KILL = {"HARNESS_KILL_GRACE_S": "0.5"}


def _marked(run_dir):
    """Live processes started for this run folder (their command line or cwd names it)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        if cwd.startswith(str(run_dir)) and _alive(int(name)):
            out.append(int(name))
    return out


def _pids_in(folder):
    return [int(p.name.split("-")[1]) for p in folder.glob("child-*")]


def _spawn_env(args, cwd, env):
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# -- one process tree per run ---------------------------------------------------------------

def test_a_forking_trainer_leaves_nothing_behind_when_its_run_ends(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    exp = write_experiment(tmp_path, runs=1, h0_args={"mode": "fork"},
                           extra_defaults=f'env = {{ PID_DIR = "{pids}" }}')
    out = harness("run", exp, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    children = _pids_in(pids)
    assert len(children) == 2       # the preflight's and the run's (#25): both end
    assert _wait_for(lambda: not any(_alive(p) for p in children), timeout=10)


def test_a_trainer_ignoring_sigterm_is_ended_at_its_timeout(tmp_path):
    exp = write_experiment(tmp_path, runs=1, h0_args={"mode": "stubborn"})
    t0 = time.monotonic()
    out = harness("run", exp, "--timeout", "2", "--retries", "0", cwd=tmp_path, env=FAST_KILL)
    assert out.returncode == 3, out.stderr
    assert time.monotonic() - t0 < 60
    run_dir = tmp_path / "results" / "exp" / "H0" / "000-1"
    assert json.loads((run_dir / "result.json").read_text())["status"] == "timeout"
    assert not _marked(run_dir)


def test_after_the_runner_is_killed_a_leftover_tree_is_ended_before_the_run_is_redone(tmp_path):
    # a trainer ignoring SIGTERM survives its runner's death (PDEATHSIG is a SIGTERM)
    once = tmp_path / "once"
    once.mkdir()
    exp = write_experiment(tmp_path, runs=1, h0_args={"mode": "stubborn", "step_sleep": 0.02},
                           extra_defaults=f'env = {{ ONCE_DIR = "{once}" }}')
    res = tmp_path / "results" / "exp"
    proc = _spawn_env(["run", exp, "--timeout", "60", "--no-preflight"], tmp_path, FAST_KILL)
    log = res / "H0" / "000-1" / "log.txt"
    assert _wait_for(lambda: log.exists() and "step:9/" in log.read_text())
    time.sleep(0.2)  # it is in its endless sleep now
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)
    leftover = _marked(res / "H0" / "000-1")
    assert leftover  # the trainer outlived the runner ...
    # ... and the next run ends it before it launches the run again
    proc2 = _spawn_env(["run", exp], tmp_path, FAST_KILL)
    redo = res / "H0" / "000-2" / "log.txt"
    assert _wait_for(lambda: redo.exists() or proc2.poll() is not None, timeout=60)
    alive_at_relaunch = [p for p in leftover if _alive(p)]
    _, err = proc2.communicate(timeout=120)
    for p in leftover:
        if _alive(p):
            os.kill(p, signal.SIGKILL)
    assert proc2.returncode == 0, err
    assert not alive_at_relaunch
    assert "step:9/" in log.read_text()  # its log is kept


def test_the_log_decides_a_run_complete_when_its_runner_died_is_not_redone(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    res = tmp_path / "results" / "exp"
    log = res / "H0" / "000-1" / "log.txt"

    def kill(backend, handle):
        if "peak memory" in log.read_text():   # after the final line, before the trainer exits
            raise RunnerKilled
    cli.backend = cli.memory(scripted(H0=FakeRun(log_polls=1, polls=5)), on_poll=kill)
    with pytest.raises(RunnerKilled):
        cli("run", exp, cwd=tmp_path)
    cli.backend.on_poll = None
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    h0 = [r for r in results_of(res) if r["hypothesis"] == "H0"]
    assert [(r["run_id"], r["status"]) for r in h0] == [("000-1", "ok")]
    assert "complete log" in h0[0]["message"]
    assert [k for k in cli.backend.launched if k[0] == "H0"] == [("H0", 0, 1)]


def test_ctrl_c_and_sigterm_name_the_stopped_runs_and_the_resume_command(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1, h0_args={"step_sleep": 0.2})
    res = tmp_path / "results" / "exp"
    for sig, code, name in ((signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")):
        proc = _spawn(["run", exp], tmp_path)
        logs = sorted(res.glob("H0/*/log.txt"))
        n = len(logs)
        assert _wait_for(lambda: len(list(res.glob("H0/*/log.txt"))) > n and
                         "step:1/" in sorted(res.glob("H0/*/log.txt"))[-1].read_text())
        run_dir = sorted(res.glob("H0/*/log.txt"))[-1].parent
        child = int(json.loads((run_dir / "launch.json").read_text())["job_id"])
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == code, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"stopped by {name}; stopped H0 #0"), last
        assert f"resume with: harness run {exp}" in last
        assert not _alive(child) and not _marked(run_dir)      # its trainer was ended
        rec = json.loads((run_dir / "result.json").read_text())
        assert rec["status"] == "interrupted" and name in rec["message"]
    cli.backend = cli.memory()     # the resume (tests/test_runner.py has it in full)
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    assert sorted((r["run_id"], r["status"]) for r in results_of(res) if r["hypothesis"] == "H0") == [
        ("000-1", "interrupted"), ("000-2", "interrupted"), ("000-3", "ok")]


# -- kills at every moment ----------------------------------------------------------------------

def test_the_runner_killed_at_any_poll_or_write_never_loses_or_duplicates_a_run(tmp_path, cli, monkeypatch):
    """Every moment a kill can land, in turn: each poll of a run, each durable write before its
    rename (the old file stands) and after it (the new one does); then at a moment of the resume."""
    from harness import records
    real_fsync, real_replace = records.os.fsync, records.os.replace
    moments = [0]
    kill_at = [0]

    def tick():
        moments[0] += 1
        if moments[0] == kill_at[0]:
            raise RunnerKilled

    def fsync(fd):
        tick()
        real_fsync(fd)

    def replace(src, dst):
        real_replace(src, dst)
        tick()
    monkeypatch.setattr(records.os, "fsync", fsync)
    monkeypatch.setattr(records.os, "replace", replace)

    def invoke(exp, folder, at):
        moments[0], kill_at[0] = 0, at
        try:
            return cli("run", exp, cwd=folder).returncode
        except RunnerKilled:
            return None
        finally:
            kill_at[0] = 0

    gen = scripted(H0=FakeRun(polls=2), H1=FakeRun(polls=2))
    clean = tmp_path / "clean"
    clean.mkdir()
    cli.backend = cli.memory(gen, on_poll=lambda b, h: tick())
    assert invoke(write_experiment(clean, runs=2), clean, 0) == 0
    total = moments[0]
    assert total > 20     # 8 polls, and each run's records, the spec...
    for at in range(1, total + 1):
        folder = tmp_path / f"k{at}"
        folder.mkdir()
        exp = write_experiment(folder, runs=2)
        res = folder / "results" / "exp"
        cli.backend = cli.memory(gen, on_poll=lambda b, h: tick())
        assert invoke(exp, folder, at) is None, at
        kept = {p: p.read_bytes() for p in res.glob("*/*/result.json")}
        invoke(exp, folder, (at * 7) % total + 1)            # the resume is killed too (or ends)
        for p, data in kept.items():
            assert p.read_bytes() == data, (at, p)              # a stored record never changes
        assert invoke(exp, folder, 0) == 0, at
        recs = results_of(res)
        done = sorted((r["hypothesis"], r["index"]) for r in recs if r["status"] in ("ok", "diverged"))
        assert done == [("H0", 0), ("H0", 1), ("H1", 0), ("H1", 1)], at   # each once
        assert all(r["status"] in ("ok", "interrupted") for r in recs), at
        assert not list(res.rglob("*.tmp")), at
        assert all((d / "launch.json").exists() for d in res.glob("H*/*")), at  # no unstarted folders left


# -- full and read-only disks ------------------------------------------------------------------

def test_disk_full_at_any_record_write_is_one_line_and_the_next_run_resumes(tmp_path, monkeypatch, memory):
    from harness import cli, records
    from harness.cli import run as runmod
    exp = write_experiment(tmp_path, runs=1)
    monkeypatch.chdir(tmp_path)
    backend = memory()
    monkeypatch.setattr(runmod, "make_backend", lambda *a: backend)
    real = records.os.fsync
    for fail_at in (1, 2, 3, 5, 8):
        calls = []

        def full_disk(fd, calls=calls, fail_at=fail_at):
            calls.append(fd)
            if len(calls) == fail_at:
                raise OSError(errno.ENOSPC, "No space left on device")
            real(fd)
        monkeypatch.setattr(records.os, "fsync", full_disk)
        before = {p: p.read_bytes() for p in (tmp_path / "results").rglob("result.json")}
        code = cli.main(["run", str(exp), "--plain"])
        monkeypatch.setattr(records.os, "fsync", real)
        for p, data in before.items():
            assert p.read_bytes() == data
        if len(calls) < fail_at:
            assert code == 0
            break
        assert code == 2
    assert cli.main(["run", str(exp), "--plain"]) == 0
    done = [(r["hypothesis"], r["status"]) for r in results_of(tmp_path / "results" / "exp")
            if r["status"] == "ok"]
    assert sorted(done) == [("H0", "ok"), ("H1", "ok")]
    assert not list((tmp_path / "results").rglob("*.tmp"))


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (needs root, as the README's test command has; else skipped)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_really_full_disk_and_a_read_only_one_are_one_line_and_resume(tmp_path, small_fs):
    exp = write_experiment(tmp_path, runs=2)
    res = small_fs / "res"
    assert harness("run", exp, "--runs", "1", "--results", res, cwd=tmp_path).returncode == 0
    stored = {p: p.read_bytes() for p in res.rglob("*") if p.is_file() and p.name != ".lock"}
    filler = small_fs / "filler"
    with open(filler, "wb") as f:  # fill the disk
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    out = harness("run", exp, "--results", res, cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert lines[-1].startswith("error: ") and "No space left" in lines[-1] and str(res) in lines[-1]
    for p, data in stored.items():
        assert p.read_bytes() == data
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    out = harness("run", exp, "--results", res, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "Read-only" in out.stderr.strip().splitlines()[-1]
    subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    out = harness("run", exp, "--results", res, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted((r["hypothesis"], r["index"]) for r in results_of(res) if r["status"] == "ok") == [
        ("H0", 0), ("H0", 1), ("H1", 0), ("H1", 1)]


def test_when_the_runner_dies_the_whole_tree_of_its_run_ends_at_once(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    exp = write_experiment(tmp_path, runs=1, h0_args={"mode": "fork", "step_sleep": 0.5},
                           extra_defaults=f'env = {{ PID_DIR = "{pids}" }}')
    proc = _spawn_env(["run", exp], tmp_path, FAST_KILL)
    assert _wait_for(lambda: _pids_in(pids))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # no resume needed: the detached child ends with its run
    assert _wait_for(lambda: not any(_alive(p) for p in _pids_in(pids)), timeout=15)


# -- the trainer killed: SIGKILL, the kernel's OOM killer (#25) --------------------------------

def test_a_sigkilled_trainer_is_recorded_as_signal_9_and_retried_and_its_supervisor_lives(tmp_path):
    exp = write_experiment(tmp_path, runs=1, h1_args={"mode": "sigkill"})
    out = harness("run", exp, "--retries", "1", "--no-preflight", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    h1 = [r for r in results_of(tmp_path / "results" / "exp") if r["hypothesis"] == "H1"]
    assert len(h1) == 2, h1                       # a signal is retried (README)
    for r in h1:
        assert r["exit_code"] == -9 and r["retryable"] is True
        assert "killed by signal 9 (SIGKILL)" in r["message"]
        assert "OSError" not in r["message"]
    log = (tmp_path / "results" / "exp" / "H1" / "000-1" / "log.txt").read_text()
    assert "Traceback" not in log and "supervise.py" not in log


def test_the_supervisor_dies_as_its_child_did_for_every_kind_of_signal(tmp_path):
    sup = str(ROOT / "harness" / "run" / "supervise.py")
    for sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGTERM):
        code = f"import os, signal; os.kill(os.getpid(), {int(sig)})"
        p = subprocess.run([sys.executable, sup, sys.executable, "-c", code], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == -int(sig), (sig, p.returncode, p.stderr)
        assert "Traceback" not in p.stderr


def test_the_kernels_oom_kill_is_named_from_the_cgroup_count(tmp_path):
    from harness.run.backends.local import LocalBackend
    counts = iter([3, 4])                         # oom_kill before and after the attempt
    backend = LocalBackend(oom_probe=lambda: next(counts))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = LaunchSpec(run_dir=run_dir, workdir=tmp_path, log_path=run_dir / "log.txt", timeout_s=30,
                      argv=[sys.executable, str(ROOT / "tests" / "stand_ins" / "fake_train.py"),
                            "--mode", "sigkill"],
                      env={"HARNESS_RUN_DIR": str(run_dir)})
    handle = backend.start(spec)
    t0 = time.monotonic()
    while (outcome := backend.poll(handle)) is None:
        assert time.monotonic() - t0 < 30
        time.sleep(0.05)
    assert outcome.exit_code == -9
    assert "out of memory" in outcome.message and "oom_kill 3 -> 4" in outcome.message
