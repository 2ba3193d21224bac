"""harness.logs.logparse on upstream-shaped logs and the traps of the records history."""
import math
import sys
from pathlib import Path

import pytest

from harness.logs.logparse import LogParser, parse_file

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import analyze_builders as B  # noqa: E402
import make_record_logs as mrl  # noqa: E402

RECORD = FIXTURES / "record_logs"


def _parse_text(tmp_path, text: str, name="log.txt"):
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return parse_file(p)


def test_record_fixture_logs_give_the_published_values():
    by_steps = {1600: [], 1575: []}
    for p in sorted(RECORD.glob("*.txt")):
        s = parse_file(p)
        assert s.finished and not s.diverged, p
        by_steps[s.total_steps].append((p.name, s.val_loss, s.train_time_s))
        assert s.gpu_names == ["NVIDIA H100 80GB HBM3"] * 8
        assert s.torch_version == "2.10.0.dev20251210+cu126" and s.cuda_version == "12.6"
        assert s.python_version == "3.12.7"
        assert s.peak_mem_mib == 30789 and s.reserved_mib == 46138
        assert s.val_curve[0][0] == 0 and s.val_curve[-1] == (s.total_steps, s.val_loss)
        assert [st for st, _ in s.val_curve[1:-1]] == list(range(250, s.total_steps, 250))
    # one 1600 log is there twice (byte-identical copy): 11 files, 10 runs
    assert len(by_steps[1600]) == 11 and len(by_steps[1575]) == 10
    h0 = [(l, t) for name, l, t in by_steps[1600] if not name.endswith("-copy.txt")]
    assert [t for _, t in h0] == mrl.H0_TIMES and [l for l, _ in h0] == mrl.H0_LOSSES
    assert [t for _, _, t in by_steps[1575]] == mrl.H1_TIMES


def test_fixture_logs_are_upstream_sized_and_regenerate_byte_identical(tmp_path):
    written = mrl.generate(tmp_path)
    committed = sorted(p.name for p in RECORD.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    for p in tmp_path.iterdir():
        assert p.read_bytes() == (RECORD / p.name).read_bytes(), p.name
    lines = [len(p.read_text().splitlines()) for p in written]
    assert 4000 < min(lines) and max(lines) < 4200
    assert any(" " in p.name for p in written)


def test_source_code_f_strings_are_not_results(tmp_path):
    text = B.log_text(steps=1600, loss=3.2776, time_s=98.081)
    code = text[:text.index("=" * 100)]
    assert 'print0(f"step:{step}/{train_steps} val_loss:' in code
    assert 'print0(f"Running PyTorch {torch.version.__version__}' in code
    s = _parse_text(tmp_path, code)
    assert not s.is_log and s.torch_version is None


def test_timing_only_line_before_the_final_val_line(tmp_path):
    text = B.log_text(steps=1600, loss=3.2776, time_s=98.081)
    assert "step:1600/1600 train_time:" in text
    s = _parse_text(tmp_path, text)
    assert s.train_time_ms == 98081 and s.last_train_time_ms == 98081
    timing = [l for l in text.splitlines() if l.startswith("step:1600/1600 train_time:")][0]
    assert int(timing.split("train_time:")[1].split("ms")[0]) < 98081


def test_stopped_before_the_last_validation(tmp_path):
    s = _parse_text(tmp_path, B.log_text(stop_at=1300))
    assert s.is_log and not s.finished and s.final_step == 1250 and s.last_step == 1300
    assert "stopped early" in s.problem()


def test_diverged_and_older_layouts(tmp_path):
    s = _parse_text(tmp_path, B.log_text(loss=math.nan))
    assert s.finished and s.diverged
    old = "\n".join([
        "=" * 100, "import os", "=" * 100,
        "step:0/3 val_loss:10.8258 train_time:0ms step_avg:nanms",
        "step:1/3 train_loss:10.8258 train_time:43ms step_avg:nanms",
        "step:2/3 train_loss:9.1 train_time:90ms step_avg:45.00ms",
        "step:3/3 train_loss:8.0 train_time:140ms step_avg:46.67ms",
        "step:3/3 val_loss:7.9000 train_time:141ms step_avg:47.00ms", ""])
    s = _parse_text(tmp_path, old)
    assert s.finished and s.val_loss == 7.9 and s.train_time_ms == 141


def test_crlf_and_a_huge_line(tmp_path):
    text = "x" * 200_000 + "step:9/9 val_loss:1.0 train_time:1ms\n" + B.log_text(steps=300, time_s=20.0)
    s = _parse_text(tmp_path, text.replace("\n", "\r\n").encode())
    assert s.finished and s.total_steps == 300 and s.train_time_ms == 20000


def test_one_gpu_log_and_readme(tmp_path):
    s = _parse_text(tmp_path, B.log_text(gpus=1))
    assert s.gpu_names == ["NVIDIA H100 80GB HBM3"]
    readme = parse_file(RECORD / "README.md")
    assert readme.is_log   # it quotes a log line: analysis must skip it by its name, not its text


def test_feed_accepts_str_lines():
    p = LogParser("live")
    for line in ["step:0/2 val_loss:5.0 train_time:0ms step_avg:0.01ms", "step:2/2 val_loss:4.0 train_time:9ms"]:
        p.feed(line)
    assert p.summary.finished and p.summary.val_loss == 4.0


@pytest.mark.parametrize("raw,finite", [("nan", False), ("inf", False), ("NaN", False), ("3.2800", True)])
def test_non_finite_losses(raw, finite):
    p = LogParser()
    p.feed(f"step:5/5 val_loss:{raw} train_time:10ms step_avg:2.00ms")
    assert p.summary.finished and math.isfinite(p.summary.val_loss) == finite
