"""Issue 14: one classifier of a log, used by the runner, the store and the analysis."""
import json
import sys
from pathlib import Path

import pytest

from conftest import STAND_INS, harness
from harness.logs.classify import Classification, classify, counted_attempt
from harness.logs.logparse import LogParser, parse_file, parse_file_runs
from harness.records import RunRecord
from harness.data.sources import record_from_log
from harness.data.store import Slot

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import analyze_builders as B  # noqa: E402
import damaged_logs as D  # noqa: E402


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")
    return folder, D.write_all(folder)


@pytest.mark.parametrize("name", sorted(D.cases()))
def test_every_damaged_log_gets_its_status_reason_and_runs(damaged, name):
    folder, expect = damaged
    e = expect[name]
    runs = parse_file_runs(folder / name)
    assert len(runs) == e.runs
    rec = record_from_log(runs[-1], "g", 0)
    assert rec.status == e.status, rec.message
    assert e.reason in rec.message
    if e.time_s is not None:
        assert rec.train_time_s == pytest.approx(e.time_s, abs=1e-9)


def test_cut_mid_number_is_not_a_fast_finished_run():
    p = LogParser()
    p.feed("step:10/10 val_loss:3.2781 train_time:6", complete=False)
    c = classify(p.summary)
    assert c.status == "failed" and "train_time:6 has no unit" in c.reason and "cut off" in c.reason


def test_seconds_and_milliseconds_both_read_right():
    for line, ms in (("train_time:833.211s step_avg:0.47s", 833211.0), ("train_time:97895ms", 97895.0)):
        p = LogParser()
        p.feed(f"step:5/5 val_loss:3.2000 {line}")
        assert p.summary.train_time_ms == pytest.approx(ms) and classify(p.summary).status == "finished"


def test_a_complete_last_line_without_newline_still_counts():
    p = LogParser()
    p.feed("step:5/5 val_loss:3.2000 train_time:9000ms step_avg:1800.00ms", complete=False)
    assert classify(p.summary).status == "finished"


def test_error_line_is_the_scripts_not_torchruns_nor_its_source(damaged):
    folder, _ = damaged
    c = classify(parse_file(folder / "oom_traceback.txt"))
    assert c.error_line == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert c.error_line in c.message and c.status == "failed"
    # only torchrun's line: that one, rather than nothing
    p = LogParser()
    p.feed("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ")
    assert "ChildFailedError" in classify(p.summary).error_line
    # the source code printed first holds error-like text, indented or quoted: not an error
    s = parse_file(folder / "good.txt")
    assert s.error_line is None and classify(s) == Classification("finished")


def test_each_run_of_a_file_keeps_its_own_error_and_environment(damaged):
    folder, _ = damaged
    first, second = parse_file_runs(folder / "crash_then_ok.txt")
    assert classify(first).status == "failed" and first.error_line == "RuntimeError: NCCL timeout"
    assert second.error_line is None and second.torch_version == "2.10.0"
    assert len(second.gpu_names) == 8 and first.label.endswith("#1") and second.label.endswith("#2")


def test_runner_and_analysis_give_every_fixture_log_the_same_status(tmp_path, damaged, cli):
    """Every fixture log goes through `harness run` (the memory backend writes it byte for
    byte, as tests/stand_ins/replay_log.py prints it) and through the analysis's reading of
    the log file: the statuses must be the same."""
    folder, expect = damaged
    logs = sorted(folder.iterdir()) + sorted((FIXTURES / "record_logs").glob("*.txt"))[:4]
    logs.append(B.write_log(tmp_path / "stopped.txt", stop_at=1300))
    logs.append(B.write_log(tmp_path / "nan.txt", loss=float("nan")))
    # a file holding several runs: the runner's attempt is its last run, as parse_file reads it
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(str(p) for p in logs) + "\n")
    exp = tmp_path / "replay.toml"
    exp.write_text(f"""
[experiment]
name = "replay"
runs = {len(logs)}
retries = 0
order = "blocked"

[defaults]
script = "{STAND_INS / 'replay_log.py'}"
launcher = "python"
nproc_per_node = 1
env = {{ REPLAY_LIST = "{lst}" }}

[[hypothesis]]
name = "H0"
control = true

[[hypothesis]]
name = "H1"
env = {{ REPLAY_LIST = "{tmp_path / 'empty.txt'}" }}
""")
    (tmp_path / "empty.txt").write_text("")
    from harness.run.backends.memory import FakeRun
    seen = 0
    # one folder per log: a log whose failure a retry cannot fix stops its arm's other runs (#25)
    for i, log in enumerate(logs):
        cli.backend = cli.memory(lambda hyp, index, attempt, log=log: FakeRun(
            log_text=log.read_bytes() if hyp == "H0" else b"", exit_code=0))
        res = tmp_path / "res" / str(i)
        out = cli("run", exp, "--runs", 1, "--results", res, cwd=tmp_path)
        assert "Traceback" not in out.stderr, out.stderr
        rec = json.loads((res / "H0" / "000-1" / "result.json").read_text())
        analysed = record_from_log(parse_file(log), "H0", 0)
        assert rec["status"] == analysed.status, (log.name, rec["message"], analysed.message)
        seen += 1
    assert seen == len(logs)


def _rec(attempt, status):
    return RunRecord(run_id=f"000-{attempt}", hypothesis="H0", index=0, seed=0, status=status,
                     attempt=attempt, val_loss=3.27 + attempt / 1000, train_time_s=90.0 + attempt)


def test_one_rule_for_the_attempt_that_counts(tmp_path):
    recs = [_rec(1, "failed"), _rec(2, "ok"), _rec(3, "ok")]
    assert counted_attempt(recs).attempt == 2 and counted_attempt(recs[::-1]).attempt == 2
    assert Slot("H0", 0, records=recs).done.attempt == 2
    assert counted_attempt([_rec(1, "failed"), _rec(2, "timeout")]) is None
    # the analysis of a results folder counts the same attempt as the store (it took the latest)
    root = B.write_results(tmp_path / "res", {
        "H0": (1600, [{"index": 0, "attempt": 1, "val_loss": 3.27, "train_time_s": 98.0},
                      {"index": 0, "attempt": 2, "val_loss": 3.29, "train_time_s": 99.0}]),
        "H1": (1600, [{"index": 0, "val_loss": 3.27, "train_time_s": 97.0}])})
    from harness.data import sources
    ds = sources.load([str(root)])
    assert ds.group("H0").times == [98.0]


TRACEBACKS = (
    # any exception name: the first line at the margin after the frames
    ("Traceback (most recent call last):\n  File \"train_gpt.py\", line 9, in <module>\n    main()\n"
     "triton.runtime.errors.OutOfResources: out of resource: shared memory, Required: 262144\n",
     "triton.runtime.errors.OutOfResources: out of resource: shared memory, Required: 262144"),
    # ranks interleaved, each behind its prefix; torchrun's own traceback after them
    ("[rank1]: Traceback (most recent call last):\n[rank0]: Traceback (most recent call last):\n"
     "[rank1]:   File \"train_gpt.py\", line 5, in <module>\n[rank0]:   File \"train_gpt.py\", line 5\n"
     "[rank0]:     x = y\n[rank1]: torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:\n"
     "[rank0]: torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:\n"
     "Traceback (most recent call last):\n  File \"/usr/bin/torchrun\", line 8, in <module>\n"
     "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n",
     "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:"),
)


@pytest.mark.parametrize("text,want", TRACEBACKS)
def test_traceback_exception_line_in_block_mode_and_line_by_line(tmp_path, text, want):
    data = (D.log(stop_at=30, tail="") + text).encode()
    p = tmp_path / "t.txt"
    p.write_bytes(data)
    block = parse_file(p)
    live = LogParser()
    for line in data.decode().splitlines():
        live.feed(line)
    assert block.error_line == live.summary.error_line == want
    assert want in classify(block).message
