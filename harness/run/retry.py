"""Retry policy: which failed attempts are worth another launch.

A launch on an 8-GPU node costs minutes of compilation before the first step, so a
failure that would certainly repeat (a typo in ``args``, a missing module or file)
is not retried; anything that may be transient (timeouts, signals, NCCL/CUDA
errors, lost nodes) is. The policy reads the script's own error line; it never
decides the status of a run (the log does).
"""
from __future__ import annotations

import re

from harness.run.backends.base import Outcome

# a failure is deterministic when the script's error says so and it printed no step line
DETERMINISTIC = re.compile(
    r"unrecognized arguments|error: argument|usage: |invalid choice|the following arguments are required"
    r"|ModuleNotFoundError|ImportError|SyntaxError|IndentationError|NameError"
    r"|FileNotFoundError|No such file or directory|can't open file|could not start"
    r"|PermissionError|IsADirectoryError|NotADirectoryError", re.I)
# ... unless it names a cause that can pass: the GPU, the interconnect, the node, memory
TRANSIENT = re.compile(
    r"NCCL|CUDA|cuDNN|cuBLAS|out of memory|ECC|Xid|device-side|NVML|timed? ?out|Connection"
    r"|Broken pipe|preempt|node fail|NODE_FAIL|signal|Killed|SIGTERM|SIGKILL|rendezvous", re.I)


def retryable(error: str, stepped: bool, outcome: Outcome, previous_error: str | None) -> bool:
    """Whether a failed attempt may succeed when launched again."""
    if outcome.message.startswith("could not start") or (outcome.exit_code == 127 and not stepped):
        return False      # the launcher itself is missing (127: command not found)
    if outcome.timed_out or (outcome.exit_code is not None and outcome.exit_code < 0):
        return True       # killed by a signal or the time limit: nothing says it would repeat
    if outcome.message and TRANSIENT.search(outcome.message):
        return True       # the backend saw the node or the scheduler fail
    if TRANSIENT.search(error):
        return True
    if stepped:
        return True       # it trained for a while: a crash mid-run may be the hardware
    if error and DETERMINISTIC.search(error):
        return False
    # the same error twice before any step: a third launch would say it again
    return not (error and previous_error is not None and error == previous_error)
