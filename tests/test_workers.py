"""Warm workers (harness/run/workers.py, docs/workers.md) through the runner with real local
processes: a stand-in that implements the protocol (tests/stand_ins/fake_worker.py), one
that does not (fake_train.py). The trainer's own worker side is in tests/test_train.py."""
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, STAND_INS, write_experiment
from harness.data import spec as specmod
from harness.data.store import Store
from harness.run import events as ev
from harness.run.backends.local import LocalBackend, marked_pids
from harness.run.progress import Progress
from harness.run.runner import Options, Runner

SERVED = re.compile(r"^served pid:(\d+) worker_run:(\d+) seed:(\d+) cwd:(.*)$", re.M)


def run_experiment(tmp_path, runs=2, h0_args=None, h1_args=None, script=None, timeout=None, retries=1):
    exp_path = write_experiment(tmp_path, runs=runs, script=script or STAND_INS / "fake_worker.py",
                                h0_args={"num_iterations": 4, **(h0_args or {})},
                                h1_args={"num_iterations": 4, **(h1_args or {})}, extra_defaults="workers = true")
    # fake_worker takes no --base-time
    exp_path.write_text(exp_path.read_text().replace(', base_time = 9.5', ''))
    exp = specmod.load(exp_path, base_dir=tmp_path)
    store = Store(tmp_path / "results" / "exp")
    events = []
    runner = Runner(exp, store, LocalBackend(), tmp_path, exp_path.read_text(),
                    Options(timeout_s=timeout, retries=retries), on_event=events.append)
    runner.run()
    return store.root, events


def records(root):
    out = {}
    for p in sorted(root.glob("*/*/result.json")):
        r = json.loads(p.read_text())
        out[(r["hypothesis"], r["index"], r["attempt"])] = r
    return out


def served(root, hyp, index, attempt=1):
    text = (root / hyp / f"{index:03d}-{attempt}" / "log.txt").read_text()
    (pid, n, seed, cwd), = SERVED.findall(text)
    return int(pid), int(n), int(seed), cwd


def test_one_warm_worker_per_arm_serves_its_runs_in_the_usual_order_and_records(tmp_path):
    root, events = run_experiment(tmp_path, runs=3)
    recs = records(root)
    assert {k: r["status"] for k, r in recs.items()} == {(h, i, 1): "ok" for h in ("H0", "H1") for i in range(3)}
    by_order = sorted(recs.values(), key=lambda r: r["order"])
    assert [(r["hypothesis"], r["index"]) for r in by_order] == [(h, i) for i in range(3) for h in ("H0", "H1")]
    for hyp in ("H0", "H1"):
        who = [served(root, hyp, i) for i in range(3)]
        assert len({pid for pid, *_ in who}) == 1                 # one process served the arm
        assert [n for _, n, _, _ in who] == [1, 2, 3]               # its 1st, 2nd, 3rd run
        assert [seed for _, _, seed, _ in who] == [0, 1, 2]          # each run's own SEED
        assert all(cwd == str(root / hyp / f"{i:03d}-1" / "script-files") for i, (*_, cwd) in enumerate(who))
        launch = json.loads((root / hyp / "002-1" / "launch.json").read_text())
        assert launch["worker"]["run"] == 3
    assert served(root, "H0", 0)[0] != served(root, "H1", 0)[0]
    # the records read the logs as ordinary runs
    assert recs[("H1", 2, 1)]["val_loss"] == 4.002 and recs[("H1", 2, 1)]["train_time_s"] == 0.012
    assert not [e for e in events if isinstance(e, ev.Note)]
    # the workers are gone with the runner, and so are their folders
    assert not any(marked_pids(str(f)) for f in (root / ".workers").glob("*"))
    assert not list((root / ".workers").iterdir())


def test_a_script_without_the_protocol_runs_fresh_processes_and_says_so_once(tmp_path):
    root, events = run_experiment(tmp_path, runs=2, script=STAND_INS / "fake_train.py")
    notes = [e.text for e in events if isinstance(e, ev.Note)]
    assert notes == [f"{STAND_INS / 'fake_train.py'} does not support warm workers; "
                     "running a fresh process per run"]
    assert [r["status"] for r in records(root).values()] == ["ok"] * 4
    assert not (root / ".workers").exists()
    shown = io.StringIO()
    progress = Progress(shown, live=False)
    for e in events:
        if not isinstance(e, ev.Done):
            progress(e)
    assert shown.getvalue().count("does not support warm workers") == 1
    assert all("worker" not in json.loads(p.read_text()) for p in root.glob("*/*/launch.json"))


def test_a_worker_killed_mid_run_is_replaced_and_the_run_redone_in_a_fresh_process(tmp_path):
    root, _ = run_experiment(tmp_path, runs=3, h0_args={"die_on_run": 2})
    recs = records(root)
    lost = recs[("H0", 1, 1)]
    assert lost["status"] == "failed" and "the warm worker ended during this run" in lost["message"]
    log = (root / "H0" / "001-1" / "log.txt").read_text()
    assert "step:2/4 train_time" in log and "harness: the warm worker ended during this run" in log
    assert recs[("H0", 1, 2)]["status"] == "ok"
    first, redo, after = served(root, "H0", 0), served(root, "H0", 1, attempt=2), served(root, "H0", 2)
    assert redo[1] == 0                                  # the redo: an ordinary fresh process
    assert after[1] == 1 and after[0] != first[0]        # the arm's next run: a new worker
    # nothing lost: every planned run has its result, H1's worker served all of its runs
    assert {(h, i) for (h, i, _), r in recs.items() if r["status"] == "ok"} == {(h, i) for h in ("H0", "H1")
                                                                                 for i in range(3)}
    assert len({served(root, "H1", i)[0] for i in range(3)}) == 1


def test_a_worker_that_dies_while_idle_is_replaced_and_no_run_fails(tmp_path):
    # H0's worker quits after its first run, while H1's run goes (0.4 s: time to see it gone)
    root, _ = run_experiment(tmp_path, runs=3, h0_args={"quit_after_run": 1}, h1_args={"step_sleep": 0.1})
    recs = records(root)
    assert {k: r["status"] for k, r in recs.items()} == {(h, i, 1): "ok" for h in ("H0", "H1") for i in range(3)}
    who = [served(root, "H0", i) for i in range(3)]
    # every worker of H0 quits after its first run: each next run gets a new one
    assert len({pid for pid, *_ in who}) == 3 and [n for _, n, _, _ in who] == [1, 1, 1]
    assert [n for _, n, _, _ in (served(root, "H1", i) for i in range(3))] == [1, 2, 3]


def test_a_hung_worker_times_out_is_ended_and_the_run_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_KILL_GRACE_S", "1")
    root, _ = run_experiment(tmp_path, runs=2, h0_args={"hang_on_run": 2}, timeout=1.5)
    recs = records(root)
    hung = recs[("H0", 1, 1)]
    assert hung["status"] == "timeout" and "warm worker" in hung["message"]
    assert recs[("H0", 1, 2)]["status"] == "ok" and served(root, "H0", 1, attempt=2)[1] == 0
    pid = served(root, "H0", 0)[0]
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_workers_key_is_checked_and_does_not_change_what_a_run_is(tmp_path):
    exp_path = write_experiment(tmp_path, extra_defaults="workers = 1")
    try:
        specmod.load(exp_path, base_dir=tmp_path)
    except specmod.UserError as e:
        assert "defaults.workers" in str(e) and "true or false" in str(e)
    else:
        raise AssertionError("workers = 1 accepted")
    plain = specmod.load(write_experiment(tmp_path), base_dir=tmp_path)
    warm = specmod.load(write_experiment(tmp_path, extra_defaults="workers = true"), base_dir=tmp_path)
    assert all(h.workers for h in warm.hypotheses) and not any(h.workers for h in plain.hypotheses)
    assert warm.frozen_view() == plain.frozen_view()   # a folder resumes with or without workers
    assert os.environ.get("HARNESS_WORKER_DIR") is None


def test_a_runner_killed_during_a_worker_run_leaves_no_worker_and_resumes(tmp_path):
    exp = write_experiment(tmp_path, runs=2, script=STAND_INS / "fake_worker.py",
                           h0_args={"num_iterations": 4, "step_sleep": 0.3}, h1_args={"num_iterations": 4},
                           extra_defaults="workers = true")
    exp.write_text(exp.read_text().replace(', base_time = 9.5', ''))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runner = subprocess.Popen([sys.executable, "-m", "harness", "run", str(exp), "--plain"], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = tmp_path / "results" / "exp"
    t0 = time.monotonic()
    while not (root / "H0" / "001-1" / "log.txt").exists():   # H0's worker serves its second run
        assert time.monotonic() - t0 < 60 and runner.poll() is None
        time.sleep(0.02)
    folders = list((root / ".workers").iterdir())
    runner.kill()
    runner.wait()
    t0 = time.monotonic()
    while any(marked_pids(str(f)) for f in folders):   # the workers end with their runner
        assert time.monotonic() - t0 < 15, "a worker outlived its runner"
        time.sleep(0.05)
    again = subprocess.run([sys.executable, "-m", "harness", "run", str(exp), "--plain"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    recs = records(root)
    assert recs[("H0", 1, 1)]["status"] == "interrupted" and recs[("H0", 1, 2)]["status"] == "ok"
    assert {(h, i) for (h, i, _), r in recs.items() if r["status"] == "ok"} == {(h, i) for h in ("H0", "H1")
                                                                                 for i in range(2)}
    assert not list((root / ".workers").iterdir())
