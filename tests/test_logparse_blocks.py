"""Block-mode parsing must agree with feeding the same log line by line."""
import io
import random

from harness.logs import logparse
from harness.logs.logparse import LogParser, parse_stream


def _line_by_line(data: bytes):
    p = LogParser()
    for line in data.split(b"\n"):
        p.feed(line.rstrip(b"\r"))
    return p.summary


def _fields(s):
    return (s.step_lines, s.total_steps, s.last_step, s.final_step, s.val_loss, s.train_time_ms,
            s.step_avg_ms, s.last_train_time_ms, s.peak_mem_mib, s.torch_version, s.gpu_names,
            s.val_curve)


def _log(n, stop=None, crlf=False, val0=False):
    rng = random.Random(n)
    out = ['    print0(f"step:{step}/{n} val_loss:{v:.4f} train_time:{t}ms")', "=" * 100,
           "Running PyTorch 2.9.0 compiled for CUDA 12.8",
           "|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |     0 |", "=" * 100]
    if val0:
        out.append(f"step:0/{n} val_loss:10.8258 train_time:0ms step_avg:nanms")
    for k in range(1, (stop or n) + 1):
        out.append(f"step:{k}/{n} train_time:{k * 61}ms step_avg:61.{rng.randint(0, 99):02d}ms")
        if k % 250 == 0 or k == n:
            out.append(f"step:{k}/{n} val_loss:{3 + 1 / k:.4f} train_time:{k * 61 + 3}ms step_avg:61.00ms")
    out.append("peak memory allocated: 30789 MiB reserved: 46138 MiB")
    sep = "\r\n" if crlf else "\n"
    return sep.join(out).encode() + sep.encode()


def test_blocks_agree_with_lines_across_many_block_boundaries(monkeypatch):
    monkeypatch.setattr(logparse, "BLOCK", 4096)  # many boundaries, some inside lines
    for data in (_log(3000), _log(3000, stop=2900), _log(1600, crlf=True), _log(1600)[:-1]):
        got = parse_stream(io.BytesIO(data))
        assert _fields(got) == _fields(_line_by_line(data))
        assert got.size == len(data)


def test_a_line_longer_than_a_block_is_not_a_line_start(monkeypatch):
    monkeypatch.setattr(logparse, "BLOCK", 1024)
    junk = b"x" * 5000 + b"step:9/9 val_loss:1.0000 train_time:5ms step_avg:1.00ms\n"
    data = junk + b"step:1/2 train_time:1ms step_avg:1.00ms\n"
    s = parse_stream(io.BytesIO(data))
    assert s.step_lines == 1 and s.final_step is None and s.last_step == 1


def _runs_line_by_line(data: bytes):
    p = LogParser()
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        p.feed(line, complete=i < len(lines) - 1)
    return p.runs()


def test_blocks_agree_with_lines_on_appended_runs_and_error_lines(monkeypatch):
    # issue 14: runs appended to one file are split at each step:0/N val_loss line, in
    # block mode as line by line, wherever the block boundaries fall
    crash = _log(600, stop=420, val0=True).replace(b"peak memory",
                                                   b"RuntimeError: NCCL watchdog timeout\npeak memory")
    cut = _log(700, val0=True)[:-60]
    a, b, c = _log(900, val0=True), _log(800, val0=True), _log(1000, val0=True)
    for block in (4096, 1 << 20):
        monkeypatch.setattr(logparse, "BLOCK", block)
        for data in (a + crash + b, crash + cut, c * 3):
            got = logparse.parse_stream_runs(io.BytesIO(data))
            want = _runs_line_by_line(data)
            assert [(_fields(s), s.error_line, s.final_problem) for s in got] == \
                   [(_fields(s), s.error_line, s.final_problem) for s in want]
    runs = logparse.parse_stream_runs(io.BytesIO(a + crash + b))
    assert [r.total_steps for r in runs] == [900, 600, 800] and runs[1].error_line.startswith("RuntimeError")
    assert [r.finished for r in runs] == [True, False, True] and {r.parts for r in runs} == {3}


def test_a_step_zero_validation_printed_twice_is_one_run():
    head = b"step:0/3 val_loss:10.8 train_time:0ms step_avg:nanms\n"
    data = head + head + b"step:1/3 train_time:5ms step_avg:5.00ms\nstep:3/3 val_loss:3.1 train_time:15ms\n"
    runs = logparse.parse_stream_runs(io.BytesIO(data))
    assert len(runs) == 1 and runs[0].finished and runs[0].train_time_ms == 15
