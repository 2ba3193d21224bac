"""Streaming parser for speedrun logs (the upstream records' format and ours).

One ``LogParser`` serves the runner's live stream (``feed`` a line at a time) and
folders of old logs (``parse_file``). Memory stays constant however long the log:
only counters, the last lines' figures and a bounded validation curve are kept.

Traps it handles (the format, for users: ``docs/log-format.md``):
- upstream logs start with the script's own source, where the same patterns sit
  inside f-strings: only lines that *start* with ``step:<digits>`` are results, and
  environment lines count only at a line start;
- at the final step a timing-only ``step:N/N train_time:`` line comes before the
  ``val_loss`` line, whose (slightly larger) time is the published one;
- older layouts (``train_loss:``, ``step_avg:nanms``), runs that stop before their
  last validation, and files that are not speedrun logs at all.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_CURVE_POINTS = 2048       # validation curve is thinned beyond this

_STEP = re.compile(rb"^step:(\d+)/(\d+)\b")
_FIELD = re.compile(rb"(val_loss|train_loss|train_time|step_avg):\s*([-+0-9.eE]+|nan|inf|-inf|NaN)(ms)?")
_PYTHON = re.compile(rb"^Running Python (\S+)")
_TORCH = re.compile(rb"^Running PyTorch (\S+)(?: compiled for CUDA (\S+))?")
_PEAK = re.compile(rb"^peak memory (?:allocated|consumption): (\d+) MiB(?: reserved: (\d+) MiB)?")
# nvidia-smi GPU row: "|   0  NVIDIA H100 80GB HBM3          On  |   00000000:..."
_GPU_ROW = re.compile(rb"^\|\s+(\d+)\s+(.+?)\s{2,}(?:On|Off)\s+\|")


@dataclass
class LogSummary:
    """What one log says about its run."""

    path: str = ""
    sha256: str = ""
    size: int = 0
    step_lines: int = 0              # 0: not a speedrun log
    total_steps: int | None = None   # N of the last "step:k/N" line
    last_step: int | None = None     # k of the last step line of any kind
    final_step: int | None = None    # step of the last validation line
    val_loss: float | None = None    # loss of the last validation line
    train_time_ms: float | None = None  # train_time on the last validation line
    step_avg_ms: float | None = None
    last_train_time_ms: float | None = None  # of the last step line of any kind
    peak_mem_mib: float | None = None
    reserved_mib: float | None = None
    python_version: str | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    gpu_names: list[str] = field(default_factory=list)
    val_curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def is_log(self) -> bool:
        return self.step_lines > 0

    @property
    def finished(self) -> bool:
        """Reached its last validation: the final result exists."""
        return (self.final_step is not None and self.final_step == self.total_steps
                and self.val_loss is not None)

    @property
    def diverged(self) -> bool:
        return self.finished and not math.isfinite(self.val_loss)

    @property
    def train_time_s(self) -> float | None:
        return None if self.train_time_ms is None else self.train_time_ms / 1000.0

    @property
    def gpu_count(self) -> int:
        return len(self.gpu_names)

    @property
    def gpu_model(self) -> str | None:
        """The GPU model when every listed GPU is the same, else a joined list."""
        names = sorted(set(self.gpu_names))
        return None if not names else " + ".join(names)

    def problem(self) -> str:
        """Why this log has no final result ('' when it has one)."""
        if not self.is_log:
            return "no 'step:k/N' lines: not a speedrun log"
        if self.final_step is None:
            return f"stopped at step {self.last_step}/{self.total_steps} before any validation line"
        if not self.finished:
            return (f"stopped early: last validation at step {self.final_step}, "
                    f"expected {self.total_steps}")
        return ""


def _num(raw: bytes) -> float:
    try:
        return float(raw)
    except ValueError:
        return math.nan


class LogParser:
    """Feed lines (bytes or str); read ``summary`` at any time."""

    def __init__(self, path: str = "") -> None:
        self.summary = LogSummary(path=path)
        self._gpu_rows: dict[int, str] = {}
        self._stride = 1           # keep every _stride-th validation point
        self._seen_val = 0

    def feed(self, line: bytes | str) -> None:
        if isinstance(line, str):
            line = line.encode("utf-8", "replace")
        s = self.summary
        first = line[:1]
        if first == b"s":
            m = _STEP.match(line)
            if m:
                self._step_line(int(m.group(1)), int(m.group(2)), line[m.end():])
            return
        if first == b"R":
            m = _TORCH.match(line)
            if m:
                s.torch_version = m.group(1).decode(errors="replace")
                if m.group(2):
                    s.cuda_version = m.group(2).decode(errors="replace").rstrip(".,")
                return
            m = _PYTHON.match(line)
            if m:
                s.python_version = m.group(1).decode(errors="replace")
            return
        if first == b"p":
            m = _PEAK.match(line)
            if m:
                s.peak_mem_mib = float(m.group(1))
                if m.group(2):
                    s.reserved_mib = float(m.group(2))
            return
        if first == b"|":
            m = _GPU_ROW.match(line)
            if m:
                # the same table may be printed twice (start and end of a run): key by index
                self._gpu_rows[int(m.group(1))] = m.group(2).decode(errors="replace").strip()
                s.gpu_names = [self._gpu_rows[i] for i in sorted(self._gpu_rows)]

    def _step_line(self, step: int, total: int, rest: bytes) -> None:
        s = self.summary
        s.step_lines += 1
        s.total_steps = total
        s.last_step = step
        fields = {k: _num(v) for k, v, _ in _FIELD.findall(rest)}
        if b"train_time" in fields:
            s.last_train_time_ms = fields[b"train_time"]
        if b"val_loss" not in fields:
            return
        loss = fields[b"val_loss"]
        s.final_step = step
        s.val_loss = loss
        s.train_time_ms = fields.get(b"train_time")
        s.step_avg_ms = fields.get(b"step_avg")
        self._add_curve_point(step, loss)

    def _add_curve_point(self, step: int, loss: float) -> None:
        s = self.summary
        self._seen_val += 1
        if s.val_curve and s.val_curve[-1][0] == step:
            s.val_curve[-1] = (step, loss)
            return
        if (self._seen_val - 1) % self._stride == 0 or step == s.total_steps:
            s.val_curve.append((step, loss))
        if len(s.val_curve) > MAX_CURVE_POINTS:
            # thin to every other point, keeping the newest, and sample half as often from now on
            s.val_curve = s.val_curve[::-2][::-1]
            self._stride *= 2


# Block mode: regexes run over many lines at once (in C), and Python only sees the
# few lines that matter. Plain step lines are counted, and only the block's last
# one is read (it carries the newest step and total).
_WANTED = re.compile(rb"^(?:step:\d+/\d+ [^\n]*val_loss|Running |peak memory|\|\s+\d+\s)[^\n]*", re.M)
_ANY_STEP = re.compile(rb"^step:\d+/\d+", re.M)
_STEP_AT = re.compile(rb"step:(\d+)/(\d+)\b")  # for match(block, pos): '^' would not match at pos
BLOCK = 1 << 20


def _feed_block(parser: LogParser, block: bytes) -> None:
    """``block`` holds whole lines ('\n'-separated, maybe '\r\n')."""
    s = parser.summary
    vals_before = s.step_lines
    for m in _WANTED.finditer(block):
        parser.feed(m.group(0).rstrip(b"\r"))
    fed_steps = s.step_lines - vals_before
    steps = len(_ANY_STEP.findall(block))
    if steps == fed_steps:
        return
    s.step_lines += steps - fed_steps
    # the block's last step line: newest step, total and train_time
    start = block.rfind(b"\nstep:") + 1
    while True:
        m = _STEP_AT.match(block, start)
        if m:
            end = block.find(b"\n", start)
            rest = block[m.end():end if end >= 0 else len(block)]
            s.total_steps, s.last_step = int(m.group(2)), int(m.group(1))
            t = re.search(rb"train_time:\s*([-+0-9.eE]+|nan)ms", rest)
            if t:
                s.last_train_time_ms = _num(t.group(1))
            return
        if start == 0:
            return
        start = block.rfind(b"\nstep:", 0, start - 1) + 1


def parse_stream(f, path: str = "") -> LogSummary:
    """Parse a binary file object in blocks; hashes the bytes on the way."""
    parser = LogParser(path)
    digest = hashlib.sha256()
    size = 0
    carry = b""
    skipping = False  # inside a line longer than BLOCK (garbage): not a line start
    while True:
        data = f.read(BLOCK)
        if not data:
            break
        digest.update(data)
        size += len(data)
        buf = carry + data
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = b"" if len(buf) > BLOCK else buf
            skipping = skipping or len(buf) > BLOCK
            continue
        block, carry = buf[:cut + 1], buf[cut + 1:]
        if skipping:
            block = block[block.find(b"\n") + 1:]
            skipping = False
        if len(carry) > BLOCK:
            carry, skipping = b"", True
        _feed_block(parser, block)
    if carry and not skipping:
        _feed_block(parser, carry)
    summary = parser.summary
    summary.sha256 = digest.hexdigest()
    summary.size = size
    return summary


def parse_file(path: str | Path) -> LogSummary:
    """Parse a log file. Raises OSError when it cannot be read."""
    with open(path, "rb") as f:
        return parse_stream(f, str(path))
