"""How an attempt died, in words: a signal, the kernel's out-of-memory killer, a CUDA OOM.

The record's reason says what ended the trainer in one line; the retry policy reads the
same facts. The kernel's word on memory comes from the cgroup the runs share (cgroup v2
``memory.events``, v1 ``memory.oom_control``): its ``oom_kill`` count before and after an
attempt. The probe is a plain function so that tests and other backends can pass their own.
"""
from __future__ import annotations

import re
import signal
from pathlib import Path

# torch: "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 ..."
_CUDA_OOM = re.compile(r"CUDA out of memory\.?(?:\s*Tried to allocate ([\d.]+\s*[KMGT]i?B))?", re.I)


def signal_phrase(exit_code: int | None) -> str:
    """'killed by signal 9 (SIGKILL)' for a negative exit code, else ''."""
    if exit_code is None or exit_code >= 0:
        return ""
    n = -exit_code
    try:
        name = signal.Signals(n).name
    except ValueError:
        return f"killed by signal {n}"
    return f"killed by signal {n} ({name})"


def cuda_oom(error: str) -> str:
    """'CUDA out of memory (tried to allocate 2.00 GiB)' when ``error`` is torch's OOM, else ''."""
    m = _CUDA_OOM.search(error or "")
    if not m:
        return ""
    return f"CUDA out of memory (tried to allocate {m.group(1)})" if m.group(1) else "CUDA out of memory"


def scheduler_oom(message: str) -> str:
    """'out of memory' when the backend's word is the scheduler's OOM state (SLURM's OUT_OF_MEMORY)."""
    return "out of memory (the scheduler's OUT_OF_MEMORY state)" if "OUT_OF_MEMORY" in (message or "") else ""


def oom_phrase(before: int | None, after: int | None) -> str:
    """The kernel's word, when its OOM killer ended a process of the cgroup in between."""
    if before is None or after is None or after <= before:
        return ""
    return f"out of memory: the kernel's OOM killer ended a process (cgroup oom_kill {before} -> {after})"


def cgroup_oom_kills(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """The ``oom_kill`` count of this process's memory cgroup; None where none can be read."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":
            candidates = [Path(root) / path.lstrip("/") / "memory.events"]          # v2
        elif "memory" in controllers.split(","):
            candidates = [Path(root) / "memory" / path.lstrip("/") / "memory.oom_control"]  # v1
        else:
            continue
        for f in candidates:
            count = _oom_kill_field(f)
            if count is not None:
                return count
    return None


def _oom_kill_field(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None
