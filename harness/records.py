"""One dataclass per record: what a finished attempt of a run left behind.

``result.json`` in every run folder is a ``RunRecord``. It is written atomically
(temp file, fsync, rename) so a crash leaves either the old file or the new one.
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

    def to_json(self) -> str:
        return json.dumps(nan_to_none(dataclasses.asdict(self)), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        rec = cls(**{k: v for k, v in data.items() if k in known})
        # JSON has no NaN: a diverged run's loss is stored as null with status diverged.
        if rec.status == "diverged" and rec.val_loss is None:
            rec.val_loss = math.nan
        return rec

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")


def nan_to_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
