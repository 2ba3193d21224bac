"""bench/detach.sh: a GPU job that outlives the device call that started it."""
import os
import subprocess
import sys
import tarfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETACH = os.path.join(ROOT, "bench", "detach.sh")


@pytest.fixture
def detach(tmp_path):
    tree, out = tmp_path / "tree", tmp_path / "out"
    tree.mkdir()
    out.mkdir()
    env = dict(os.environ, DETACH_ROOT=str(tmp_path / "jobs"), OUT=str(out))

    def call(*args, timeout=60):
        return subprocess.run(["bash", DETACH, *args], cwd=tree, env=env, capture_output=True,
                              text=True, timeout=timeout)
    call.tree, call.out = tree, out
    return call


def test_job_runs_in_its_own_copy_and_wait_brings_its_files_back(detach):
    (detach.tree / "input.txt").write_text("from the tree\n")
    results = detach.tree / "res"
    (results / ".cache").mkdir(parents=True)
    (results / "r.json").write_text("{}")
    (results / ".cache" / "big").write_text("x")
    r = detach("start", "j", "--", "bash", "-c", "cat input.txt; echo changed > input.txt; sleep 3; exit 3")
    assert r.returncode == 0, r.stderr
    assert detach("start", "j", "--", "true").returncode == 2  # one job of a name at a time
    r = detach("wait", "j", "30", str(results))
    assert r.returncode == 1 and "job j: ended rc=3" in r.stdout  # ended, but not with 0
    assert (detach.tree / "input.txt").read_text() == "from the tree\n"  # the job wrote its copy
    assert "from the tree" in (detach.out / "j.log").read_text()
    with tarfile.open(detach.out / "res-j.tgz") as t:
        assert sorted(t.getnames()) == ["res", "res/r.json"]  # no compile cache


def test_wait_returns_while_the_job_runs_and_stop_interrupts_it(detach):
    # A background job of a non-interactive shell starts with SIGINT ignored; the job must
    # not, or neither `stop` nor record_parity.sh's `timeout -s INT` could end a harness run.
    script = ("import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
              "    print('interrupted', flush=True)\n")
    r = detach("start", "k", "--", sys.executable, "-c", script)
    assert r.returncode == 0, r.stderr
    r = detach("wait", "k", "1")
    assert r.returncode == 3 and "job k: running" in r.stdout
    t0 = time.time()
    r = detach("stop", "k", "^[^ ]*python[0-9.]* -c")
    assert r.returncode == 0, r.stderr
    r = detach("wait", "k", "30")
    assert r.returncode == 0 and "interrupted" in r.stdout and time.time() - t0 < 30


def test_bad_use_is_exit_2(detach):
    assert detach("wait", "nothing", "1").returncode == 2
    assert detach("start", "x", "true").returncode == 2  # no "--"
    assert detach("frobnicate", "x").returncode == 2
