"""One dataclass per record: what a finished attempt of a run left behind.

``result.json`` in every run folder is a ``RunRecord``. The harness reads and writes it
through the store (``harness.data.store``: atomically, with its ``schema_version``);
``save`` and ``load`` here are the bare record, as files from before versions were, for
tests and tools that build or read folders by hand.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# ok: reached its final validation with a finite loss.
# diverged: reached it with NaN/inf: data against the hypothesis, never dropped.
# failed: ended without a final result (crash, early stop, truncated log).
# timeout: killed by the harness's time limit.
# interrupted: never finished because the runner itself died; redone on resume
#   and not counted against --retries ("never finished" is not "failed").
STATUSES = ("ok", "diverged", "failed", "timeout", "interrupted")
COMPLETED = ("ok", "diverged")  # these runs are data


@dataclass
class RunRecord:
    run_id: str
    hypothesis: str
    index: int                       # slot of this run within its hypothesis (0-based)
    seed: int
    status: str
    attempt: int = 1
    order: int | None = None         # position in the experiment's launch order
    exit_code: int | None = None
    final_step: int | None = None
    expected_steps: int | None = None
    val_loss: float | None = None
    train_time_s: float | None = None
    step_avg_ms: float | None = None
    peak_mem_mib: float | None = None
    wall_s: float | None = None
    started_at: str | None = None
    finished_at: str | None = None
    host: str | None = None
    gpus: dict = field(default_factory=lambda: {"names": [], "count": 0})
    torch_version: str | None = None
    cuda_version: str | None = None
    script_sha256: str | None = None
    git_commit: str | None = None
    command: list[str] = field(default_factory=list)
    backend: str = "local"
    job_id: str | None = None
    message: str = ""                # why it failed, with the log's path
    log: str = "log.txt"             # the log the figures were read from (in the run folder)
    val_curve: list[list[float]] = field(default_factory=list)  # [[step, loss], ...]
    probe_s: float | None = None     # the speed probe's time before this run (speed_probe = true)
    error: str = ""                  # the script's own error line, when it failed
    retryable: bool = True           # False: the failure would repeat (usage error, missing file)
    # schema 2: what the attempt cost. gpu_s = wall_s x the GPUs it held (nproc_per_node x
    # nodes); phases: its time split by the log lines' arrival (PHASE_KEYS; docs/results-folder.md).
    # None: not known (a record of schema 1, a plain log read by analyze)
    gpu_s: float | None = None
    gpus_used: int | None = None
    phases: dict | None = None

    def to_json(self) -> str:
        return dumps(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        """A record from parsed JSON; TypeError (saying which key) when the shape is wrong."""
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key in _SHAPES and value is not None and not _SHAPES[key](value):
                raise TypeError(f"key {key!r}: unexpected value {value!r}")
        rec = cls(**{k: v for k, v in data.items() if k in known})
        if rec.status not in STATUSES:
            raise TypeError(f"key 'status': {rec.status!r} is not one of {', '.join(STATUSES)}")
        # JSON has no NaN: a diverged run's loss is stored as null with status diverged.
        if rec.status == "diverged" and rec.val_loss is None:
            rec.val_loss = math.nan
        # the harness writes NaN and infinity as null: a literal one was put there by hand,
        # and an ok run with it would count a loss or a time that is none
        if rec.val_loss is not None and not math.isfinite(rec.val_loss) and rec.status != "diverged":
            raise TypeError(f"key 'val_loss': {rec.val_loss!r} with status {rec.status!r} (a run with a "
                            f"NaN or infinite loss is 'diverged'; an ok run has a finite loss)")
        for key in ("train_time_s", "step_avg_ms", "wall_s"):
            value = getattr(rec, key)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise TypeError(f"key {key!r}: {value!r} is not a time (negative or not finite)")
        return rec

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_REQUIRED_STR = lambda v: isinstance(v, str)  # noqa: E731
# key -> check of its value when not null: a record of the wrong shape is refused when read,
# not a traceback deep in the statistics
_SHAPES = {
    "run_id": _REQUIRED_STR, "hypothesis": _REQUIRED_STR, "status": _REQUIRED_STR,
    "index": lambda v: _is_int(v) and v >= 0, "seed": _is_int, "attempt": lambda v: _is_int(v) and v >= 1,
    "order": _is_int, "exit_code": _is_int, "final_step": _is_int, "expected_steps": _is_int,
    "val_loss": _is_num, "train_time_s": _is_num, "step_avg_ms": _is_num, "peak_mem_mib": _is_num,
    "wall_s": _is_num, "started_at": _REQUIRED_STR, "finished_at": _REQUIRED_STR, "host": _REQUIRED_STR,
    "gpus": lambda v: isinstance(v, dict), "torch_version": _REQUIRED_STR, "cuda_version": _REQUIRED_STR,
    "script_sha256": _REQUIRED_STR, "git_commit": _REQUIRED_STR,
    "command": lambda v: isinstance(v, list), "backend": _REQUIRED_STR, "job_id": _REQUIRED_STR,
    "message": _REQUIRED_STR, "log": _REQUIRED_STR, "error": _REQUIRED_STR,
    "retryable": lambda v: isinstance(v, bool),
    "gpu_s": _is_num, "gpus_used": lambda v: _is_int(v) and v >= 1,
    "phases": lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and (x is None or _is_num(x)) for k, x in v.items()),
    "val_curve": lambda v: isinstance(v, list) and all(
        isinstance(p, list) and len(p) == 2 and all(x is None or _is_num(x) for x in p) for p in v),
}


# The phases of an attempt, in time order from its launch (seconds; docs/results-folder.md).
# to_first_step_s + between_steps_s + train_s + after_last_step_s = wall_s; teardown_s
# follows the process's exit. to_first_output_s and warmup_s are parts of to_first_step_s.
PHASE_KEYS = ("to_first_output_s", "warmup_s", "to_first_step_s", "between_steps_s", "train_s",
              "after_last_step_s", "teardown_s")


@dataclass(frozen=True)
class GpuTotals:
    """GPU-seconds of a set of attempts (every status): spent, of which timed training."""

    attempts: int           # attempts counted (their gpu_s known)
    unknown: int            # attempts without gpu_s (records of schema 1, plain logs)
    gpu_s: float
    train_gpu_s: float      # train_s x the attempt's GPUs

    @property
    def overhead_share(self) -> float | None:
        """The share of the GPU-seconds that were not timed training; None when nothing was spent."""
        return None if self.gpu_s <= 0 else max(0.0, 1.0 - self.train_gpu_s / self.gpu_s)

    def to_dict(self) -> dict:
        return {"attempts": self.attempts, "unknown": self.unknown, "gpu_s": round(self.gpu_s, 3),
                "train_gpu_s": round(self.train_gpu_s, 3),
                "overhead_share": None if self.overhead_share is None else round(self.overhead_share, 4)}

    def line(self) -> str:
        """One line for people: 'GPU-seconds spent 1234.5 over 20 attempts (every status), of which
        timed training 400.0 (overhead 68%)'."""
        if not self.attempts:
            return "GPU-seconds n/a (no attempt has its cost recorded)"
        share = self.overhead_share
        text = (f"GPU-seconds spent {self.gpu_s:.1f} over {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
                " (every status), "
                f"of which timed training {self.train_gpu_s:.1f}"
                + (f" (overhead {100 * share:.0f}%)" if share is not None else ""))
        return text + (f"; {self.unknown} without a recorded cost" if self.unknown else "")


def gpu_totals(records) -> GpuTotals:
    """The GPU-seconds of ``records`` (failed, timed-out and interrupted attempts included)."""
    n = unknown = 0
    spent = train = 0.0
    for r in records:
        if r.gpu_s is None:
            unknown += 1
            continue
        n += 1
        spent += r.gpu_s
        t = (r.phases or {}).get("train_s")
        if t is not None and r.gpus_used:
            train += t * r.gpus_used
    return GpuTotals(n, unknown, spent, train)


def median_phases(records) -> dict | None:
    """Each phase's median over the ``records`` that have it (None: no record has phases)."""
    with_phases = [r.phases for r in records if r.phases]
    if not with_phases:
        return None
    out = {}
    for key in PHASE_KEYS:
        xs = sorted(p[key] for p in with_phases if p.get(key) is not None)
        n = len(xs)
        out[key] = None if not n else round(xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2, 3)
    return out


def dumps(obj) -> str:
    """JSON for a record file: NaN and infinity become null (JSON has neither)."""
    return json.dumps(nan_to_none(obj), indent=2, allow_nan=False)


def nan_to_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def umask() -> int:
    try:  # thread-safe read (Linux); os.umask can only read by setting
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


TMP_SUFFIX = ".tmp"   # temp files are ".<name>.<random>.tmp"; cleaned at the next run


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600; records are for the team: 0666 less the umask, as open() would
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.filename is None:
            # a failed write() names no file: name the one that could not be written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
