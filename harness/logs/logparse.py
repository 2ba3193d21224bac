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
  last validation, and files that are not speedrun logs at all;
- strict figures: a time counts with its unit only (``ms``, or ``s`` as other tracks
  write it), a loss bare, and a last line cut by the end of the file is named as such;
- several runs appended to one file (split at each ``step:0/N val_loss`` line);
- gzip, UTF-16 and BOMs, ``\r`` line ends; the script's own error line (exception,
  argparse) for the classifier (``harness/logs/classify.py``), which judges the summary.
"""
from __future__ import annotations

import codecs
import hashlib
import math
import os
import re
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path

MAX_CURVE_POINTS = 2048       # validation curve is thinned beyond this
MAX_ERROR_LINE = 300          # characters kept of the script's own error line

_STEP = re.compile(rb"^step:(\d+)/(\d+)\b")
# a figure, then whatever letters follow it (its unit, or the sign of a cut or garbled line)
_FIELD = re.compile(rb"(val_loss|train_loss|train_time|step_avg):\s*"
                    rb"([-+]?(?:nan|NaN|NAN|inf|Inf|INF)|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                    rb"([A-Za-z%]*)")
_TIME_UNITS = {b"ms": 1.0, b"s": 1000.0}
_PYTHON = re.compile(rb"^Running Python (\S+)")
_TORCH = re.compile(rb"^Running PyTorch (\S+)(?: compiled for CUDA (\S+))?")
_PEAK = re.compile(rb"^peak memory (?:allocated|consumption): (\d+) MiB(?: reserved: (\d+) MiB)?")
# nvidia-smi GPU row: "|   0  NVIDIA H100 80GB HBM3          On  |   00000000:..."
# the project trainer's own account of its compile and untimed warm-up (train/README.md):
# "warmup: 41234ms compile and untimed warm-up, 52345ms since process start"
_WARMUP = re.compile(rb"^warmup: (\d+(?:\.\d+)?)ms\b")
_GPU_ROW = re.compile(rb"^\|\s+(\d+)\s+(.+?)\s{2,}(?:On|Off)\s+\|")
# The script's own error: a Python exception line ("ModuleNotFoundError: ...",
# "torch.OutOfMemoryError: ...", "KeyboardInterrupt") or argparse's "prog: error: ...",
# maybe behind torchrun's "[rank0]: " / "[default0]:" prefix. At a line start only:
# the source printed at the top of upstream logs holds such text indented or quoted.
_RANK_PREFIX = rb"(?:\[(?:rank|default)?\d+\]:\s?)?"
_ERROR_BODY = (_RANK_PREFIX + rb"(?:(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt)"
               rb"(?::[^\n]*|[ \t\r]*$)|[\w./-]*: error: [^\n]*|error: [^\n]*)")
_ERROR = re.compile(rb"^" + _ERROR_BODY)
_RANK_STRIP = re.compile(rb"^" + _RANK_PREFIX)
_RANK_AT = re.compile(_RANK_PREFIX)             # for match(block, pos)
# A traceback's exception line is its first line at the left margin after the frames,
# whatever the exception's name (triton's OutOfResources, dynamo's BackendCompilerFailed).
_TRACEBACK = b"Traceback (most recent call last)"
MAX_TRACEBACK_LINES = 500     # frames looked through in block mode
# torchrun's own report of a child's failure: less telling than the child's exception
_LAUNCHER = re.compile(rb"torch\.distributed\.elastic|ChildFailedError|SignalException")


class NotALogFile(OSError):
    """A path that must not be opened as a log (a FIFO, a device, a folder)."""


@dataclass
class LogSummary:
    """What one log (or one run of a log holding several) says about its run."""

    path: str = ""
    sha256: str = ""                 # of the decoded text (UTF-8, '\n' line ends)
    size: int = 0                    # bytes of the file as stored
    step_lines: int = 0              # 0: not a speedrun log
    total_steps: int | None = None   # N of the last "step:k/N" line
    last_step: int | None = None     # k of the last step line of any kind
    final_step: int | None = None    # step of the last validation line
    val_loss: float | None = None    # loss of the last validation line
    train_time_ms: float | None = None  # train_time on the last validation line
    step_avg_ms: float | None = None
    last_train_time_ms: float | None = None  # of the last step line of any kind
    final_problem: str = ""          # why the last validation line's figures do not count
    error_line: str | None = None    # the script's last error line (exception, argparse error)
    launcher_error_line: str | None = None  # torchrun's, when the script printed none
    read_problem: str = ""           # the bytes could not all be read (cut gzip data)
    part: int = 0                    # which run of the file (0-based), when it holds several
    parts: int = 1                   # how many runs the file holds
    peak_mem_mib: float | None = None
    warmup_ms: float | None = None   # the script's own "warmup: Wms" line, when it prints one
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

    @property
    def label(self) -> str:
        """The log's path, with the run's number when the file holds several."""
        return self.path if self.parts <= 1 else f"{self.path}#{self.part + 1}"

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


def _fields(rest: bytes) -> tuple[dict[bytes, float], dict[bytes, str]]:
    """Figures of a step line in ms (times) or as written (losses), and the bad ones.

    Strict: a time counts only with its unit (ms or s), a loss only bare. Anything
    else (``train_time:6`` cut at the end of a file, ``val_loss:3.27x``) is named.
    """
    good: dict[bytes, float] = {}
    bad: dict[bytes, str] = {}
    for key, raw, unit in _FIELD.findall(rest):
        shown = f"{key.decode()}:{(raw + unit).decode(errors='replace')}"
        if key in (b"train_time", b"step_avg"):
            if unit in _TIME_UNITS:
                value = _num(raw) * _TIME_UNITS[unit]
                if math.isfinite(value) and value >= 0:
                    good[key] = value
                else:      # a clock does not run backwards or forever: a garbled line
                    bad[key] = f"{shown} is not a time (negative or not finite)"
                continue
            bad[key] = f"{shown} has {'no unit' if not unit else 'an unknown unit'} (ms or s)"
        elif unit:
            bad[key] = f"{shown} is not a number"
        else:
            good[key] = _num(raw)
    return good, bad


class LogParser:
    """Feed lines (bytes or str); read ``summary`` (the current run) at any time.

    A file may hold several runs appended to each other: each ``step:0/N val_loss``
    line after a run's steps (past step 0) starts a new one; ``runs()`` lists them all.
    """

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.summary = LogSummary(path=path)
        self._done: list[LogSummary] = []
        self._stride = 1           # keep every _stride-th validation point
        self._seen_val = 0
        # environment lines printed after a run's step lines: the next run's header,
        # or (when no run follows) a table printed again at the end of this one
        self._env: dict = {}
        self._next_env: dict = {}
        self._tracebacks: set[bytes] = set()   # rank prefixes inside a traceback's frames

    def feed(self, line: bytes | str, complete: bool = True) -> None:
        """One line, without its line end; ``complete``: False for a file's unterminated last line."""
        if isinstance(line, str):
            line = line.encode("utf-8", "replace")
        line = line.rstrip(b"\r\n")
        s = self.summary
        first = line[:1]
        if first == b"s":
            m = _STEP.match(line)
            if m:
                self._step_line(int(m.group(1)), int(m.group(2)), line[m.end():], complete)
                return
        if first == b"R":
            m = _TORCH.match(line)
            if m:
                env = self._env_target()
                env["torch_version"] = m.group(1).decode(errors="replace")
                if m.group(2):
                    env["cuda_version"] = m.group(2).decode(errors="replace").rstrip(".,")
                self._apply_env()
                return
            m = _PYTHON.match(line)
            if m:
                self._env_target()["python_version"] = m.group(1).decode(errors="replace")
                self._apply_env()
                return
        if first == b"p":
            m = _PEAK.match(line)
            if m:
                s.peak_mem_mib = float(m.group(1))
                if m.group(2):
                    s.reserved_mib = float(m.group(2))
                return
        if first == b"w":
            m = _WARMUP.match(line)
            if m:
                s.warmup_ms = float(m.group(1))
                return
        if first == b"|":
            m = _GPU_ROW.match(line)
            if m:
                # the same table may be printed twice (start and end of a run): key by index
                rows = self._env_target().setdefault("gpu_rows", {})
                rows[int(m.group(1))] = m.group(2).decode(errors="replace").strip()
                self._apply_env()
                return
        self._error_line(line)

    def _error_line(self, line: bytes) -> None:
        m = _RANK_STRIP.match(line)
        prefix, body = line[:m.end()].strip(), line[m.end():]
        if self._tracebacks:
            if prefix in self._tracebacks:
                if body[:1] in (b" ", b"\t") or not body.strip():
                    return                          # a frame of this traceback
                self._tracebacks.discard(prefix)
                self._set_error(line, body)       # its exception line
                return
        if body.startswith(_TRACEBACK):
            self._tracebacks.add(prefix)
            return
        if _ERROR.match(line):
            self._set_error(line, body)

    def _set_error(self, line: bytes, body: bytes) -> None:
        text = body.strip().decode("utf-8", "replace")[:MAX_ERROR_LINE]
        if _LAUNCHER.search(line):
            self.summary.launcher_error_line = text
        else:
            self.summary.error_line = text

    # -- environment: belongs to this run until its step lines start -----------------
    def _env_target(self) -> dict:
        return self._next_env if self.summary.step_lines else self._env

    def _apply_env(self) -> None:
        if not self.summary.step_lines:
            _set_env(self.summary, self._env)

    def _step_line(self, step: int, total: int, rest: bytes, complete: bool) -> None:
        s = self.summary
        fields, bad = _fields(rest)
        is_val = b"val_loss" in fields or b"val_loss" in bad
        # a new run only once this one has trained: a step-0 validation printed twice in a
        # row (a restart before training) stays one run
        if step == 0 and is_val and (s.last_step or 0) > 0:
            self._next_run()
            s = self.summary
        s.step_lines += 1
        s.total_steps = total
        s.last_step = step
        if b"train_time" in fields:
            s.last_train_time_ms = fields[b"train_time"]
        if not is_val:
            return
        loss = fields.get(b"val_loss", math.nan)
        s.final_step = step
        s.val_loss = loss
        s.train_time_ms = fields.get(b"train_time")
        s.step_avg_ms = fields.get(b"step_avg")
        problems = [bad[k] for k in (b"val_loss", b"train_time") if k in bad]
        if not complete and not re.search(rb"\d(?:ms|s)\s*$", rest):
            problems.append("the file ends inside this line (cut off)")
        s.final_problem = "; ".join(problems)
        if b"val_loss" in fields:
            self._add_curve_point(step, loss)

    def _next_run(self) -> None:
        """Close the current run; the environment printed since its steps began is the next one's."""
        self._done.append(self.summary)
        self.summary = LogSummary(path=self.path)
        self._env, self._next_env = self._next_env, {}
        self._stride, self._seen_val = 1, 0
        self._tracebacks = set()
        _set_env(self.summary, self._env)

    def runs(self) -> list[LogSummary]:
        """Every run fed so far, in file order (the last is ``summary``)."""
        if self._next_env:
            merged = dict(self._env)
            rows = {**merged.get("gpu_rows", {}), **self._next_env.get("gpu_rows", {})}
            merged.update(self._next_env)
            merged["gpu_rows"] = rows
            _set_env(self.summary, merged)
        out = self._done + [self.summary]
        for i, r in enumerate(out):
            r.part, r.parts = i, len(out)
        return out

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


def _set_env(s: LogSummary, env: dict) -> None:
    if "python_version" in env:
        s.python_version = env["python_version"]
    if "torch_version" in env:
        s.torch_version = env["torch_version"]
    if "cuda_version" in env:
        s.cuda_version = env["cuda_version"]
    rows = env.get("gpu_rows")
    if rows:
        s.gpu_names = [rows[i] for i in sorted(rows)]


# Block mode: regexes run over many lines at once (in C), and Python only sees the
# few lines that matter. Plain step lines are counted, and only the block's last
# one is read (it carries the newest step and total).
_WANTED = re.compile(rb"^(?:step:\d+/\d+ [^\n]*val_loss|Running |peak memory|warmup: \d|\|\s+\d+\s)[^\n]*", re.M)
_ANY_STEP = re.compile(rb"^step:\d+/\d+", re.M)
_STEP_AT = re.compile(rb"step:(\d+)/(\d+)\b")  # for match(block, pos): '^' would not match at pos
_ERROR_AT = re.compile(_ERROR_BODY)               # likewise
# an error line holds one of these: found by substring search (as fast as memchr), not
# by one more regex pass over every line
_ERROR_NEEDLES = (b"rror", b"Exception", b"Interrupt")   # "rror": "Error" and "error: "
BLOCK = 1 << 20
_SNIFF = 4096                 # bytes looked at to tell gzip and UTF-16 from plain text


def _error_lines(block: bytes) -> list[bytes]:
    """The lines of a block that may hold an error, in order: error-like lines and
    tracebacks (through their exception line), for ``LogParser.feed`` to judge."""
    starts = set()
    for needle in _ERROR_NEEDLES:
        i = block.find(needle)
        while i >= 0:
            start = block.rfind(b"\n", 0, i) + 1
            if _ERROR_AT.match(block, start):
                starts.add(start)
            i = block.find(b"\n", i)
            if i < 0:
                break
            i = block.find(needle, i)
    i = block.find(_TRACEBACK)
    while i >= 0:
        start = block.rfind(b"\n", 0, i) + 1
        starts.update(_traceback_lines(block, start))
        i = block.find(_TRACEBACK, i + 1)
    out = []
    for start in sorted(starts):
        end = block.find(b"\n", start)
        out.append(block[start:end if end >= 0 else len(block)])
    return out


def _traceback_lines(block: bytes, start: int) -> list[int]:
    """Starts of a traceback's lines (same rank prefix), through its exception line."""
    m = _RANK_AT.match(block, start)
    if not block.startswith(_TRACEBACK, m.end()):
        return []                    # not at a line start: quoted in the source, say
    prefix = block[start:m.end()].strip()
    out = [start]
    pos = block.find(b"\n", start) + 1
    for _ in range(MAX_TRACEBACK_LINES):
        if pos <= 0 or pos >= len(block):
            break
        m = _RANK_AT.match(block, pos)
        if block[pos:m.end()].strip() == prefix:
            out.append(pos)
            c = block[m.end():m.end() + 1]
            if c not in (b" ", b"\t", b"\n", b""):
                break                # the exception line
        pos = block.find(b"\n", pos) + 1
    return out


def _step_line_before(block: bytes, end: int) -> bool:
    """Whether a step line starts before ``end`` (substring search: a regex pass costs more)."""
    pos = 0 if block.startswith(b"step:") else block.find(b"\nstep:", 0, end) + 1 or -1
    while 0 <= pos < end:
        if _STEP_AT.match(block, pos):
            return True
        pos = block.find(b"\nstep:", pos, end) + 1 or -1
    return False


def _feed_block(parser: LogParser, block: bytes, complete: bool = True) -> None:
    """``block`` holds whole lines ('\n'-separated); ``complete`` False: its last line has no end."""
    s = parser.summary
    wanted = list(_WANTED.finditer(block))
    starts = [m for m in wanted if m.group(0).startswith(b"step:0/")]
    if starts and (len(starts) > 1 or s.step_lines or _step_line_before(block, starts[0].start())):
        # a new run may start inside this block: line by line, so each run gets its own counts
        lines = block.split(b"\n")
        for i, line in enumerate(lines):
            parser.feed(line, complete or i < len(lines) - 1)
        return
    vals_before = s.step_lines
    for m in wanted:
        parser.feed(m.group(0), complete)
    for line in _error_lines(block):
        parser.feed(line, complete)
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
            t = _fields(rest)[0].get(b"train_time")
            if t is not None:
                s.last_train_time_ms = t
            return
        if start == 0:
            return
        start = block.rfind(b"\nstep:", 0, start - 1) + 1


def _gunzip(chunks, problems: list[str]):
    """Decompress gzip data (several members too) in bounded pieces: no gzip bomb fills memory."""
    d, fed = zlib.decompressobj(31), False
    try:
        for raw in chunks:
            while raw:
                fed = True
                out = d.decompress(raw, BLOCK)
                if out:
                    yield out
                if d.eof:
                    raw = d.unused_data.lstrip(b"\0")   # padding after a member is allowed
                    d, fed = zlib.decompressobj(31), False
                else:
                    raw = d.unconsumed_tail
        out = d.flush()
        if out:
            yield out
        if fed and not d.eof:
            problems.append("the gzip data is cut off")
    except zlib.error as e:
        problems.append(f"the gzip data is corrupt ({e})")


def _utf16(chunks, encoding: str):
    dec = codecs.getincrementaldecoder(encoding)(errors="replace")
    for raw in chunks:
        out = dec.decode(raw)
        if out:
            yield out.encode("utf-8")
    tail = dec.decode(b"", final=True)
    if tail:
        yield tail.encode("utf-8")


def _utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le'/'-be' for BOM-less UTF-16 text (ASCII: every other byte 0), else None."""
    n = len(head) // 2 * 2
    if n < 8:
        return None
    even, odd = head[0:n:2].count(0), head[1:n:2].count(0)
    if odd > 0.4 * n / 2 and even == 0:
        return "utf-16-le"
    if even > 0.4 * n / 2 and odd == 0:
        return "utf-16-be"
    return None


def _text_chunks(f, problems: list[str], counted: list[int]):
    """The bytes of ``f`` as UTF-8 text with '\n' line ends, whatever the file was.

    gzip (by its magic bytes, any name), UTF-16 (BOM, or BOM-less ASCII-range text),
    a UTF-8 BOM, and '\r\n' or lone '\r' line ends are all undone here.
    """
    first = f.read(BLOCK)
    counted[0] += len(first)

    def raw():
        if first:
            yield first
        while True:
            data = f.read(BLOCK)
            if not data:
                return
            counted[0] += len(data)
            yield data

    chunks = raw()
    if first[:2] == b"\x1f\x8b":
        chunks = _gunzip(chunks, problems)
    head, chunks = _peek(chunks)
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        chunks = _utf16(chunks, "utf-16")
    elif _utf16_without_bom(head[:_SNIFF]):
        chunks = _utf16(chunks, _utf16_without_bom(head[:_SNIFF]))
    elif head[:3] == codecs.BOM_UTF8:
        chunks = _skip(chunks, 3)
    cr_pending = False
    for data in chunks:
        if cr_pending and data[:1] == b"\n":
            data = data[1:]        # the '\n' of a '\r\n' split between two chunks
        if b"\r" in data:
            cr_pending = data[-1:] == b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            cr_pending = False
        if data:
            yield data


def _peek(chunks):
    """(first chunk, the same chunks again)."""
    head = next(chunks, b"")

    def again():
        if head:
            yield head
        yield from chunks
    return head, again()


def _skip(chunks, n: int):
    for data in chunks:
        if n:
            data, n = data[n:], max(0, n - len(data))
        if data:
            yield data


def parse_stream_runs(f, path: str = "") -> list[LogSummary]:
    """Parse a binary file object in blocks; one summary per run the file holds.

    Memory stays bounded by one block plus each run's summary, however long the file.
    """
    parser = LogParser(path)
    digest = hashlib.sha256()
    size = [0]            # bytes of the file as stored
    carry = b""
    skipping = False  # inside a line longer than BLOCK (garbage): not a line start
    problems: list[str] = []
    for data in _text_chunks(f, problems, size):
        digest.update(data)
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
        _feed_block(parser, carry, complete=False)
    runs = parser.runs()
    for r in runs:
        r.sha256 = digest.hexdigest()
        r.size = size[0]
    if problems:
        runs[-1].read_problem = "; ".join(problems)
    return runs


def parse_stream(f, path: str = "") -> LogSummary:
    """The last run of a binary file object (``parts`` says how many it holds)."""
    return parse_stream_runs(f, path)[-1]


def open_log(path: str | Path):
    """Open a log for reading without ever blocking.

    Raises ``NotALogFile`` for a FIFO, a device or a folder (opening a FIFO would
    wait for a writer forever) and ``OSError`` as ``open`` does otherwise (a link
    to nothing: FileNotFoundError; a loop of links: errno ELOOP).
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotALogFile(f"{path}: {_kind(st.st_mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)     # it may have been swapped since the stat
        if not stat.S_ISREG(st.st_mode):
            raise NotALogFile(f"{path}: {_kind(st.st_mode)}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def parse_file_runs(path: str | Path) -> list[LogSummary]:
    """Every run of a log file. Raises OSError (or NotALogFile) when it cannot be read."""
    with open_log(path) as f:
        return parse_stream_runs(f, str(path))


def parse_file(path: str | Path) -> LogSummary:
    """The last run of a log file. Raises OSError when it cannot be read."""
    return parse_file_runs(path)[-1]
