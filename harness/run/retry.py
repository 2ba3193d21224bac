"""Retry policy: which failed attempts are worth another launch.

A launch on an 8-GPU node costs minutes of compilation before the first step, so a
failure that would certainly repeat is not retried: any error before the first step
line that is not a known transient (a typo in ``args``, the trainer's own usage error,
a missing module or file, a CUDA out-of-memory on the same batch and card). What may
pass is retried: timeouts, signals (the OOM killer, a node-health check), NCCL/CUDA
errors, lost nodes, a fork that failed for want of resources (EAGAIN, ENOMEM). A CUDA
out-of-memory after training began is retried once. The policy reads the script's own
error line; it never decides the status of a run (the log does).
"""
from __future__ import annotations

import re

from harness.run.backends.base import Outcome
from harness.run.deaths import cuda_oom

# a cause that can pass: the GPU, the interconnect, the node, the scheduler
TRANSIENT = re.compile(
    r"NCCL|CUDA|cuDNN|cuBLAS|ECC|Xid|device-side|NVML|timed? ?out|Connection"
    r"|Broken pipe|preempt|node fail|NODE_FAIL|signal|Killed|SIGTERM|SIGKILL|rendezvous", re.I)
# start-up that failed for want of resources at that moment (fork, threads): EAGAIN, ENOMEM
STARTUP = re.compile(r"Resource temporarily unavailable|EAGAIN|\[Errno 11\]|Cannot allocate memory"
                     r"|ENOMEM|\[Errno 12\]|can't start new thread", re.I)


def retryable(error: str, stepped: bool, outcome: Outcome, previous_error: str | None) -> bool:
    """Whether a failed attempt may succeed when launched again.

    ``previous_error``: the error line of the slot's previous failed attempt (None: none).
    """
    said = f"{outcome.message} {error}"
    if STARTUP.search(said):
        return True       # no process or thread could be made just then
    if outcome.message.startswith("could not start") or (outcome.exit_code == 127 and not stepped):
        return False      # the launcher itself is missing (127: command not found)
    if outcome.timed_out or (outcome.exit_code is not None and outcome.exit_code < 0):
        return True       # killed by a signal or the time limit: nothing says it would repeat
    if "out of memory" in outcome.message or "OUT_OF_MEMORY" in outcome.message:
        return True       # the kernel ended it for memory: others' memory, maybe
    if cuda_oom(error):
        # before the first step: the same batch on the same card runs out again; in mid-run
        # (fragmentation, a longer sequence) once more, not forever
        return stepped and not cuda_oom(previous_error or "")
    if outcome.message and TRANSIENT.search(outcome.message):
        return True       # the backend saw the node or the scheduler fail
    if TRANSIENT.search(error):
        return True
    if stepped:
        return True       # it trained for a while: a crash mid-run may be the hardware
    # before the first step: an error line that names no transient cause would repeat; a
    # process that said nothing at all may be tried again
    return not error
