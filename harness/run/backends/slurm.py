"""SLURM backend: every attempt is one submitit job on one node.

The job runs the very command the local backend runs (``spec.argv`` in
``spec.workdir`` with ``spec.env`` over the job's environment, stdout and stderr
appended to ``spec.log_path``), so records, store and statistics do not change.
Run folders must be on a filesystem that the compute nodes share with the
submitting host; the backend checks that once, when it is built.

How an attempt ends, and what ``poll`` reports:

* the command exits              -> its exit code (from the job's result pickle)
* ``timeout_s`` passes           -> the job kills the process group; ``timed_out``
* SLURM cancels / preempts / times out / loses the node, or the job dies before
  it can report                  -> ``exit_code=None`` and a message naming the
  SLURM state and the job's stderr file; the runner counts it as a failure and
  retries within its bound.

SLURM itself never requeues an attempt (``--no-requeue``), and submitit's own
requeue-on-preemption is disabled: resubmitting is the runner's job, so a retry
is always a new attempt with its own folder and log. A job requeued anyway (an
admin made it requeueable, then ``scontrol requeue``) is back in the queue after
its command was stopped: its attempt ends at once as REQUEUED and the job is
cancelled, so that it never runs a second time.

Job states come from ``squeue --states=all`` (which also lists recently ended
jobs), then ``sacct`` for the jobs squeue no longer lists, when the cluster has
accounting, asked at most every ``status_interval_s`` for all tracked jobs at once
(every second for a job whose result says SLURM stopped it, so its retry waits
seconds, not the interval): the runner polls every 50 ms, and ``poll`` itself
only looks for the job's result file. Three answers are kept apart: a state; "not
known to SLURM" (GONE: squeue answered and sacct has no record or is disabled),
after which a job without a result is lost and retried; and "SLURM could not be
asked" (squeue failed, or sacct failed other than "accounting storage is
disabled"), which keeps the last state: such a job is never presumed gone.

Why not submitit's own ``SlurmInfoWatcher`` (read in submitit 1.5.4): it asks
only ``sacct`` (batched; at 0, 2, 4, 8 ... s after the last submission, then every
``delay_s``, 600 s for ``SlurmJob``'s shared instance), and it logs and skips any
failure of sacct, leaving the state "UNKNOWN", the answer it also gives for a job
sacct has not recorded yet. Without accounting (the CI cluster) sacct always fails,
so a job that died without writing its result would stay UNKNOWN, and its attempt
would never be retried. It also counts PREEMPTED as unfinished (submitit requeues
preempted jobs; these jobs never requeue). Using it for the sacct half only would
still need our own test of whether sacct answered, which is all that half is; so
both halves are ours (``tests/test_slurm_state.py`` pins the case that decided it).
"""
from __future__ import annotations

import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.run.backends.base import Backend, Handle, LaunchSpec, Outcome

ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
          "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
          "RESV_DEL_HOLD", "POWER_UP_NODE", "UNKNOWN"}
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL",
            "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"}
GONE = "GONE"  # neither squeue nor sacct knows the job (any more)
# back in the queue after SLURM stopped it: requeued (`scontrol requeue` by an admin who made the job
# requeueable, a site's preemption mode). Its attempt ended; the job is cancelled so that it never
# runs a second time under the same folder, and the runner retries the run as a new attempt.
REQUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}
REQUEUED = "REQUEUED"
COMMENT_PREFIX = "harness:"
TRANSIENT = ("timed out", "temporarily", "try again", "connection refused", "unable to contact")
USABLE_NODE_STATES = {"idle", "mix", "mixed", "alloc", "allocated", "comp", "completing", "resv",
                      "reserved", "plnd", "planned"}
TIME_MARGIN_MIN = 5  # SLURM time limit = the run's timeout + this, so our own kill comes first


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _user_error(msg: str) -> Exception:
    from harness.errors import UserError
    return UserError(msg)


# --------------------------------------------------------------------------------------------
# What runs on the compute node. Module-level functions, pickled by reference: the job
# imports this module (the sbatch script puts the harness on PYTHONPATH).


def run_attempt(task: dict) -> dict:
    """Run one attempt's command on the node and report how it ended.

    Never raises for the command's own failures: they are an exit code. Signals from
    SLURM (SIGTERM on scancel, preemption or time limit) are forwarded to the
    command's process group and reported as ``slurm_signal``.
    """
    # SLURM's own name of the node: what a paired follow-up job pins to (--nodelist)
    host = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    started_at, t0 = now_iso(), time.monotonic()
    out = {"token": task["token"], "host": host, "started_at": started_at, "exit_code": None,
           "timed_out": False, "slurm_signal": None, "error": None}

    def done(**kw) -> dict:
        out.update(kw)
        out["finished_at"] = now_iso()
        out["wall_s"] = time.monotonic() - t0
        return out

    run_dir = Path(task["run_dir"])
    if not run_dir.is_dir():
        return done(error=f"run folder {run_dir} is not visible on {host}: the results folder must be "
                          f"on a filesystem shared with the compute nodes")
    if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
        return done(error="SLURM requeued this job; the harness retries failed attempts itself",
                    slurm_signal="REQUEUE")

    log = open(task["log_path"], "ab", buffering=0)

    def note(text: str) -> None:
        try:
            log.write(f"harness(slurm): {text}\n".encode())
        except (OSError, ValueError):
            pass

    env = {**os.environ, **task["env"]}
    # SLURM sends SIGUSR2 to every process of the step some time before the time limit
    # (submitit's --signal); by default it would kill the command early. The command
    # inherits "ignore" and dies, if it must, at the limit itself (state TIMEOUT).
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(task["argv"], cwd=task["workdir"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as e:
        note(f"could not start {task['argv'][0]!r}: {e}")
        log.close()
        return done(error=f"could not start {task['argv'][0]!r} on {host}: {e}")

    grace = float(task.get("kill_grace_s", 10.0))
    state = {"signal": None, "killed_at": None}

    def kill_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def on_term(signum, frame):  # scancel, preemption, time limit: stop the command now
        if state["signal"] is None:
            state["signal"] = signal.Signals(signum).name
            note(f"received {state['signal']} from SLURM (job cancelled, preempted or out of time); "
                 f"stopping the command")
        kill_group(signal.SIGTERM)
        if state["killed_at"] is None:
            state["killed_at"] = time.monotonic()

    def on_usr2(signum, frame):  # submitit asks SLURM for USR2 shortly before the time limit
        note("received SIGUSR2 from SLURM: the job's time limit (or a preemption) is near")

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR2, on_usr2)
    timeout_s = task.get("timeout_s")
    timed_out = False
    try:
        while True:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if timeout_s is not None and not timed_out and now - t0 >= timeout_s:
                timed_out = True
                note(f"killed after the {timeout_s:g} s timeout")
                kill_group(signal.SIGTERM)
                state["killed_at"] = now
            if state["killed_at"] is not None and now - state["killed_at"] >= grace:
                kill_group(signal.SIGKILL)
    finally:
        kill_group(signal.SIGKILL)  # stragglers of the group (torchrun workers)
        for s, h in old.items():
            signal.signal(s, h)
        log.close()
    # SLURM signals the whole step at once, so the command may die of it before this process
    # hears it; only a command that had already succeeded outruns a cancel.
    signalled = state["signal"] if proc.returncode != 0 and not timed_out else None
    return done(exit_code=proc.returncode, timed_out=timed_out, slurm_signal=signalled)


def probe_filesystem(token_path: str, reply_path: str) -> str:
    """The shared-filesystem check: read the submitter's token, answer next to it."""
    host = socket.gethostname()
    try:
        token = Path(token_path).read_text()
    except OSError as e:
        raise RuntimeError(f"{token_path} is not readable on {host}: {e}") from e
    tmp = Path(reply_path + ".tmp")
    tmp.write_text(f"{token}\n{host}\n")
    tmp.rename(reply_path)
    return host


# --------------------------------------------------------------------------------------------
# The submitting side.


@dataclass
class JobState:
    """What the submitting side knows of one attempt's job (``Handle.extra["job"]``)."""

    token: str                      # our attempt's id inside the job's task: tells a reused job id apart
    started_at: str                 # ISO-8601 UTC: submission (or the submitted file's time, adopted)
    t0: float                       # time.monotonic() at submission, for wall_s
    result: str                     # submitit's result pickle
    stderr: str                     # the job's own stderr and stdout files
    stdout: str
    adopted: bool = False           # found again after the runner that submitted it died
    node: str = ""                  # where SLURM placed it, once running
    next_look: float = 0.0          # monotonic time before which the result file is not asked again
    ended_seen: float | None = None     # when SLURM first showed it ended without a result
    signal_seen: float | None = None    # when its result first showed a signal from SLURM
    result_data: dict | None = None     # the result, kept while SLURM finishes the job
    outcome: Outcome | None = None      # final; poll returns it from then on
    cancelled: bool = False
    result_error: str = ""              # why the result file, present, could not be read
    cancel_error: str = ""              # why the last scancel failed


def job_state(handle: Handle) -> JobState:
    return handle.extra["job"]


class UnreadableJob(Exception):
    """A job's submission file exists but cannot be read: whose job it is, is unknown."""


class _Status:
    """SLURM states of the tracked jobs, asked for all at once, at most every ``interval_s``."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.tracked: set[str] = set()
        self.info: dict[str, dict] = {}
        self.asked_at = -math.inf
        self.sacct_works: bool | None = None
        self.error = ""   # why the last ask got no answer ("" when it did)

    def get(self, job_id: str, fresh: bool = False, max_age_s: float | None = None) -> dict:
        """The job's last known state; asks SLURM when that answer is older than the interval
        (or ``max_age_s``: a job about to end is asked about more often)."""
        since = time.monotonic() - self.asked_at
        if job_id not in self.tracked or job_id not in self.info:
            self.tracked.add(job_id)
            fresh = fresh or since >= min(1.0, self.interval_s)  # new job: ask, at most once a second
        if fresh or since >= min(self.interval_s, max_age_s if max_age_s is not None else math.inf):
            self.refresh()
        # not answered yet (controller unreachable): assume it is still there
        return self.info.get(job_id, {"state": "UNKNOWN"})

    def forget(self, job_id: str) -> None:
        self.tracked.discard(job_id)
        self.info.pop(job_id, None)

    def refresh(self) -> None:
        ids = sorted(self.tracked)
        self.asked_at = time.monotonic()
        if not ids:
            return
        found: dict[str, dict] = {}
        ok = False
        try:
            p = subprocess.run(["squeue", "--noheader", "--states=all", "--jobs=" + ",".join(ids),
                                "--format=%i|%T|%N|%r|%S"],
                               capture_output=True, text=True, timeout=60)
            # some SLURM versions fail on ids they no longer know: that is an answer too
            ok = p.returncode == 0 or "invalid job id" in p.stderr.lower()
            if not ok:
                self.error = "squeue: " + ((p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1])
            for line in p.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) >= 4 and parts[0] in self.tracked:
                    found[parts[0]] = {"state": parts[1].split()[0].rstrip("+"), "node": parts[2],
                                       "reason": parts[3], "start": parts[4] if len(parts) > 4 else ""}
        except (OSError, subprocess.SubprocessError) as e:
            self.error = f"squeue: {e}"
        missing = [i for i in ids if i not in found]
        if missing and self.sacct_works is not False:
            answer = self._sacct(missing)
            if answer is None:
                ok = False  # nobody could say whether the missing jobs still exist
            else:
                found.update(answer)
        if ok:
            self.error = ""
        for i in ids:
            if i in found:
                self.info[i] = found[i]
            elif ok:
                self.info[i] = {"state": GONE}
            # else: SLURM could not be asked; keep what we knew (UNKNOWN counts as still there)

    def _sacct(self, ids: list[str]) -> dict[str, dict] | None:
        """sacct's states of ``ids``; None when sacct did not answer this time."""
        try:
            p = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations",
                                "--jobs=" + ",".join(ids), "--format=JobID,State,NodeList,ExitCode,Start"],
                               capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            self.sacct_works = False     # no sacct on this host: squeue is all there is
            return {}
        except (OSError, subprocess.SubprocessError) as e:
            self.error = f"sacct: {e}"
            return None
        if p.returncode != 0:
            why = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
            if "accounting storage is disabled" in p.stderr.lower():
                self.sacct_works = False  # for good: a job squeue no longer lists is gone
                return {}
            # slurmdbd down or slow: a job squeue dropped is unknown this time, not gone
            self.error = f"sacct: {why}"
            return None
        self.sacct_works = True
        out = {}
        for line in p.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 3 and parts[0] in ids:
                # "CANCELLED by 0" -> CANCELLED
                out[parts[0]] = {"state": parts[1].split()[0].rstrip("+"), "node": parts[2],
                                 "reason": f"exit code {parts[3]}" if len(parts) > 3 else "",
                                 "start": parts[4] if len(parts) > 4 else ""}
        return out


def ask_states(job_ids) -> tuple[dict[str, dict], str]:
    """SLURM's answer for ``job_ids``, asked once: id -> {state, node, reason, start} (squeue,
    then sacct); and why SLURM could not be asked ("" when it answered). For ``harness status``."""
    status = _Status(0.0)
    status.tracked = {str(j) for j in job_ids if str(j).strip()}
    status.refresh()
    return status.info, status.error


class SlurmBackend(Backend):
    name = "slurm"

    def __init__(self, partition: str | None = None, max_parallel: int = 1, time_min: int | None = None,
                 extra: dict[str, str] | None = None, folder: str | Path = "results/.slurm",
                 gpus_per_node: int | None = None, cpus_per_task: int | None = None,
                 status_interval_s: float = 5.0, result_grace_s: float = 15.0,
                 kill_grace_s: float = 10.0, check_filesystem: bool = True,
                 check_timeout_s: float = 300.0) -> None:
        """
        partition      None: the cluster's default partition.
        max_parallel   jobs in the queue or running at once.
        time_min       SLURM time limit per job; None: the run's timeout + 5 min, or the
                       partition's default when the run has no timeout.
        extra          more sbatch options, e.g. {"account": "proj", "exclusive": ""}
                       ("" or "true" makes a bare flag).
        gpus_per_node  None: the run's nproc when the partition has GPUs (GRES gpu), else no
                       GPU request; 0: never request GPUs; N: request N.
        status_interval_s / result_grace_s / kill_grace_s: how often squeue is asked; how
                       long an ended job may take to show its result file (slow NFS); how
                       long a killed command gets between SIGTERM and SIGKILL.
        """
        if max_parallel is None or int(max_parallel) < 1:
            raise _user_error(f"slurm backend: max_parallel {max_parallel!r}: expected a positive integer "
                              f"(--max-parallel K)")
        self.max_parallel = int(max_parallel)
        self.partition = partition or None
        self.time_min = time_min
        self.extra = {str(k).replace("_", "-"): v for k, v in (extra or {}).items()}
        self.folder = Path(folder).resolve()
        self.cpus_per_task = cpus_per_task
        self.result_grace_s = result_grace_s
        self.kill_grace_s = kill_grace_s
        self.status = _Status(status_interval_s)
        self._check_tools()
        self.partition_has_gpus = self._check_partition()
        self.gpus_per_node = gpus_per_node
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _user_error(f"slurm backend: cannot create the job folder {self.folder}: {e}") from None
        try:
            import submitit  # noqa: F401  (fail here, not at the first start)
        except ImportError:
            raise _user_error("slurm backend: the Python package 'submitit' is missing; "
                              f"install it with: {sys.executable} -m pip install submitit") from None
        self._pythonpath = str(Path(__file__).resolve().parents[3])
        if check_filesystem:
            self._check_filesystem(check_timeout_s)

    # -- construction checks ---------------------------------------------------------------
    def _check_tools(self) -> None:
        for tool in ("sbatch", "squeue", "scancel", "sinfo", "srun"):
            if shutil.which(tool) is None:
                raise _user_error(f"slurm backend: {tool!r} not found on PATH; run the harness on a SLURM "
                                  f"login node (or install slurm-client), or use --backend local")

    def _check_partition(self) -> bool:
        """Whether the partition exists (UserError if not) and has GPUs."""
        try:
            p = subprocess.run(["sinfo", "--noheader", "--format=%P|%G|%D"], capture_output=True,
                               text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise _user_error(f"slurm backend: sinfo failed ({e}); is the SLURM controller reachable "
                              f"from this host?") from None
        if p.returncode != 0:
            why = (p.stderr.strip().splitlines() or ["no output"])[-1]
            raise _user_error(f"slurm backend: sinfo failed ({why}); is the SLURM controller reachable "
                              f"from this host?")
        parts: dict[str, bool] = {}
        nodes: dict[str, int] = {}
        default = None
        for line in p.stdout.splitlines():
            name, _, rest = line.strip().partition("|")
            gres, _, count = rest.partition("|")
            if name.endswith("*"):
                name = name[:-1]
                default = name
            parts[name] = parts.get(name, False) or "gpu" in gres.lower()
            nodes[name] = nodes.get(name, 0) + (int(count) if count.strip().isdigit() else 2)
        pinned = any(k in self.extra for k in ("nodelist", "w"))
        if self.partition is None:
            if default is None:
                raise _user_error(f"slurm backend: the cluster has no default partition; pass --partition "
                                  f"(one of {', '.join(sorted(parts)) or 'none listed'})")
            self.may_span_nodes = nodes[default] > 1 and not pinned
            return parts[default]
        if self.partition not in parts:
            raise _user_error(f"slurm backend: partition {self.partition!r} does not exist; pass --partition "
                              f"with one of: {', '.join(sorted(parts)) or '(sinfo lists none)'}")
        self.may_span_nodes = nodes[self.partition] > 1 and not pinned
        return parts[self.partition]

    def node_usable(self, node: str) -> bool:
        """False when SLURM reports ``node`` down, drained, failing or unknown."""
        try:
            p = subprocess.run(["sinfo", "--noheader", "--nodes=" + node, "--format=%t"],
                               capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return True   # cannot ask: let sbatch decide
        states = {ln.strip().rstrip("*~#!%$@^-").lower() for ln in p.stdout.splitlines() if ln.strip()}
        if p.returncode != 0 or not states:
            return False  # no such node (any more)
        return bool(states & USABLE_NODE_STATES)

    def _check_filesystem(self, timeout_s: float) -> None:
        """A tiny job reads a token the submitter wrote and answers next to it."""
        probe_dir = self.folder / "fs-check"
        probe_dir.mkdir(exist_ok=True)
        name = uuid.uuid4().hex
        token, reply = probe_dir / f"{name}.token", probe_dir / f"{name}.reply"
        secret = uuid.uuid4().hex
        token.write_text(secret)
        ex = self._executor(job_name="harness-fs-check", time=5, gpus=0)
        try:
            job = ex.submit(probe_filesystem, str(token), str(reply))
        except _submit_errors() as e:  # sbatch refused: bad --slurm-extra, account, ...
            raise _user_error(f"slurm backend: sbatch refused the check job: {_first_line(e)}; fix the "
                              f"slurm options (--partition, --slurm-extra)") from None
        deadline = time.monotonic() + timeout_s
        ended_at = None
        try:
            while time.monotonic() < deadline:
                if reply.exists():
                    if reply.read_text().split("\n")[0] != secret:
                        raise _user_error(f"slurm backend: the check job answered with a wrong token in "
                                          f"{reply}; is {self.folder} shared by several clusters?")
                    return
                st = self.status.get(job.job_id)["state"]
                if st in TERMINAL or st == GONE:
                    ended_at = ended_at or time.monotonic()
                    if time.monotonic() - ended_at > self.result_grace_s:
                        why = _tail_line(job.paths.stderr) or "it left no log here either"
                        raise _user_error(
                            f"slurm backend: a test job (SLURM state {st}) could not answer in {self.folder}: "
                            f"{why}; the results folder and this Python ({sys.executable}) must be on a "
                            f"filesystem shared with the compute nodes")
                time.sleep(0.2)
            why = self._scancel(job.job_id)
            left = f"; scancel failed ({why}), cancel it by hand" if why else ""
            print(f"harness: warning: the slurm filesystem check job {job.job_id} did not run within "
                  f"{timeout_s:g} s (busy cluster?); going on without the check{left}", file=sys.stderr)
        finally:
            self.status.forget(job.job_id)
            for f in (token, reply):
                try:
                    f.unlink()
                except OSError:
                    pass

    # -- submitting ------------------------------------------------------------------------
    def _executor(self, job_name: str, time: int | None, gpus: int, comment: str | None = None,
                  node: str | None = None):
        import submitit
        ex = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=0)
        extra = {}
        for k, v in self.extra.items():
            if v is False or str(v).lower() == "false":
                continue
            extra[k] = True if v is True or str(v).lower() in ("", "true") else v
        extra.setdefault("no-requeue", True)
        if comment is not None:
            extra.setdefault("comment", comment)
        if node:
            extra["nodelist"] = node  # the partner's node: one pair, one machine
        params = dict(job_name=job_name[:100], nodes=1, ntasks_per_node=1, time=time,
                      additional_parameters=extra, signal_delay_s=30,
                      setup=[f"export PYTHONPATH={shlex.quote(self._pythonpath)}${{PYTHONPATH:+:$PYTHONPATH}}"])
        if self.partition:
            params["partition"] = self.partition
        if self.cpus_per_task:
            params["cpus_per_task"] = int(self.cpus_per_task)
        if gpus and not any(k in self.extra for k in ("gpus-per-node", "gres", "gpus", "gpus-per-task")):
            params["gpus_per_node"] = int(gpus)
        ex.update_parameters(**params)
        return ex

    def _gpus_for(self, spec: LaunchSpec) -> int:
        if self.gpus_per_node is not None:
            return int(self.gpus_per_node)
        return spec.nproc if self.partition_has_gpus else 0

    def _time_for(self, spec: LaunchSpec) -> int | None:
        if self.time_min:
            return int(self.time_min)
        if spec.timeout_s is not None:
            return int(math.ceil(spec.timeout_s / 60.0)) + TIME_MARGIN_MIN
        return None

    def start(self, spec: LaunchSpec) -> Handle:
        run_dir = Path(spec.run_dir).resolve()
        comment = COMMENT_PREFIX + str(run_dir)  # lets reattach find a job whose id was never saved
        token = uuid.uuid4().hex
        task = {"token": token, "argv": [str(a) for a in spec.argv],
                "workdir": str(Path(spec.workdir).resolve()), "env": {str(k): str(v) for k, v in spec.env.items()},
                "log_path": str(Path(spec.log_path).resolve()), "run_dir": str(run_dir),
                "timeout_s": spec.timeout_s, "kill_grace_s": self.kill_grace_s}
        name = f"harness:{run_dir.parent.name}/{run_dir.name}"
        ex = self._executor(job_name=name, time=self._time_for(spec), gpus=self._gpus_for(spec),
                            comment=comment, node=spec.node)
        for attempt in range(4):
            try:
                job = ex.submit(run_attempt, task)
                break
            except _submit_errors() as e:
                msg = _first_line(e)
                if attempt < 3 and any(w in msg.lower() for w in TRANSIENT):
                    time.sleep(2 + 5 * attempt)  # a busy or restarting controller: try again
                    continue
                raise _user_error(f"slurm backend: sbatch refused the job for {run_dir}: {msg}; fix the slurm "
                                  f"options (--partition, --slurm-time, --slurm-extra)") from None
        return self._handle(spec, job.job_id, token)

    def _handle(self, spec: LaunchSpec, job_id: str, token: str, adopted: bool = False) -> Handle:
        import submitit
        job = submitit.SlurmJob(folder=self.folder, job_id=job_id)
        state = JobState(token=token, started_at=now_iso(), t0=time.monotonic(), adopted=adopted,
                         result=str(job.paths.result_pickle), stderr=str(job.paths.stderr),
                         stdout=str(job.paths.stdout))
        # "started_at" is the one key every backend's handle offers the runner
        return Handle(spec, job_id=job_id, extra={"job": state, "started_at": state.started_at})

    def _find_active(self, comment: str, run_dir: Path) -> tuple[str, str] | None:
        try:
            p = subprocess.run(["squeue", "--noheader", "--states=all", "--user=" + _user(),
                                "--format=%i|%k"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise UnreadableJob(f"squeue failed: {e}") from None
        if p.returncode != 0:  # an empty answer here would make a queued job look gone
            why = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
            raise UnreadableJob(f"squeue failed: {why}")
        lines = [ln for ln in p.stdout.splitlines() if ln.strip().partition("|")[0].isdigit()]
        for line in sorted(lines, key=lambda ln: -int(ln.strip().partition("|")[0])):  # newest first
            job_id, _, job_comment = line.strip().partition("|")
            if job_comment == comment:
                token = self._submitted_token(job_id, run_dir, wait=True)
                if token is not None:
                    return job_id, token
        return None

    def _submitted_token(self, job_id: str, run_dir: Path, wait: bool = False) -> str | None:
        """The token of our attempt for ``run_dir`` submitted as ``job_id``, if that is what it is."""
        import submitit
        from submitit.core import utils
        path = submitit.SlurmJob(folder=self.folder, job_id=job_id).paths.submitted_pickle
        for _ in range(10 if wait else 1):  # submitit renames it into place just after sbatch
            try:
                delayed = utils.pickle_load(path)
                break
            except FileNotFoundError:
                if wait:
                    time.sleep(0.2)
            except Exception as e:  # truncated, or written by another submitit/python: not "gone"
                raise UnreadableJob(f"{path}: {_first_line(e)}") from None
        else:
            return None
        try:
            task = delayed.args[0]
            if Path(task["run_dir"]) != Path(run_dir).resolve():
                return None
            return task["token"]
        except (AttributeError, IndexError, KeyError, TypeError):
            return None

    # -- following -------------------------------------------------------------------------
    def poll(self, handle: Handle) -> Outcome | None:
        x = job_state(handle)
        if x.outcome is not None:
            return x.outcome
        res = x.result_data or self._load_result(handle)
        if res is not None and res.get("slurm_signal") and not res.get("timed_out"):
            # SLURM stopped the command: name the state SLURM ends the job in (CANCELLED,
            # PREEMPTED, TIMEOUT...), which shows once the job has left COMPLETING.
            x.result_data = res
            first = x.signal_seen is None
            x.signal_seen = x.signal_seen or time.monotonic()
            # the job ends within seconds of its result: ask now, then every second, not every
            # status_interval_s (the retry waits on this answer)
            st = self.status.get(handle.job_id, fresh=first, max_age_s=1.0)["state"]
            if st in ACTIVE:
                requeued = st in REQUEUED_STATES   # no need to wait: it will not end by itself soon
                if not requeued and time.monotonic() - x.signal_seen < self.result_grace_s:
                    return None
                # requeued by SLURM, or stuck: the runner retries, not SLURM
                x.cancel_error = self._scancel(handle.job_id)
                if requeued:
                    st = REQUEUED
            res = dict(res, slurm_state=st)
        if res is not None:
            x.outcome = self._from_result(handle, res)
            self.status.forget(handle.job_id)
            return x.outcome
        info = self.status.get(handle.job_id)
        st = info["state"]
        if st in ACTIVE:
            if st not in ("PENDING", "CONFIGURING") and info.get("node"):
                x.node = info["node"]
            return None
        # ended (or forgotten by SLURM) without a result so far: give a slow shared
        # filesystem a moment to show the result file, then call it lost.
        if x.ended_seen is None:
            x.ended_seen = time.monotonic()
            return None
        if time.monotonic() - x.ended_seen < self.result_grace_s:
            return None
        res = self._load_result(handle, force=True)
        if res is not None:
            x.outcome = self._from_result(handle, res)
        else:
            x.outcome = self._lost(handle, info)
        self.status.forget(handle.job_id)
        return x.outcome

    def _load_result(self, handle: Handle, force: bool = False):
        x = job_state(handle)
        now = time.monotonic()
        if not force and now < x.next_look:
            return None  # the runner polls every 50 ms; the filesystem is asked twice a second
        x.next_look = now + 0.5
        path = Path(x.result)
        try:
            path.parent.chmod(path.parent.stat().st_mode)  # refresh NFS attribute caches
        except OSError:
            pass
        if not path.exists():
            return None
        from submitit.core import utils
        try:
            kind, value = utils.pickle_load(path)
        except Exception as e:  # noqa: BLE001  unpickling can raise anything; every failure is kept
            # submitit renames the file into place, so this is rarely a write in progress (NFS may
            # show one): read again at the next poll, and name the reason if the job ends like this
            x.result_error = f"{path}: {type(e).__name__}: {_first_line(e)}"
            return None
        x.result_error = ""
        if kind == "success" and isinstance(value, dict):
            if value.get("token") != x.token:
                return None  # a stale file from a reused job id
            return value
        # submitit caught an exception around run_attempt (unpickling, import, ...)
        return {"error": _last_line(str(value)) or "the job raised an exception", "exit_code": None,
                "token": x.token}

    def _from_result(self, handle: Handle, r: dict) -> Outcome:
        x = job_state(handle)
        host = r.get("host") or x.node or ""
        started = r.get("started_at") or x.started_at
        finished = r.get("finished_at") or now_iso()
        wall = r.get("wall_s")
        if wall is None:
            wall = time.monotonic() - x.t0
        if r.get("error"):
            return Outcome(exit_code=None, timed_out=False, started_at=started, finished_at=finished,
                           wall_s=wall, host=host,
                           message=f"SLURM job {handle.job_id}: {r['error']} (job stderr: {x.stderr})")
        if r.get("timed_out"):
            t = handle.spec.timeout_s
            return Outcome(exit_code=r.get("exit_code"), timed_out=True, started_at=started,
                           finished_at=finished, wall_s=wall, host=host,
                           message=f"killed after the {t:g} s timeout" if t is not None else "timed out")
        if r.get("slurm_signal"):
            st = r.get("slurm_state") or GONE
            state = st if (st in TERMINAL and st != "COMPLETED") or st == REQUEUED else "signalled"
            left = (f"; scancel failed ({x.cancel_error}): the job may still be in SLURM's queue"
                    if x.cancel_error else "")
            if st == REQUEUED and not x.cancel_error:
                left = "; the requeued job was cancelled (a retry is a new attempt, never the same job)"
            return Outcome(exit_code=None, timed_out=st == "TIMEOUT", started_at=started, finished_at=finished,
                           wall_s=wall, host=host,
                           message=f"SLURM job {handle.job_id} {state} ({r['slurm_signal']} from SLURM stopped "
                                   f"the command, exit code {r.get('exit_code')}; job stderr: {x.stderr}){left}")
        return Outcome(exit_code=r.get("exit_code"), timed_out=False, started_at=started, finished_at=finished,
                       wall_s=wall, host=host, message="")

    def _lost(self, handle: Handle, info: dict) -> Outcome:
        x = job_state(handle)
        st = info["state"]
        what = (f"ended in state {st}" if st != GONE else
                "is no longer known to SLURM (squeue/sacct)")
        reason = info.get("reason") or ""
        if reason and reason not in ("None", "(null)"):
            what += f" ({reason})"
        log = x.stderr
        tail = _tail_line(log)
        hint = f"; last line: {tail}" if tail else ""
        if not Path(log).exists():
            hint = f"; no job log appeared in {Path(log).parent}: is it on a filesystem shared with the nodes?"
        ended = (f"but its result file is unreadable ({x.result_error})" if x.result_error else
                 "without reporting a result")
        return Outcome(exit_code=None, timed_out=st == "TIMEOUT", started_at=x.started_at,
                       finished_at=now_iso(), wall_s=time.monotonic() - x.t0, host=info.get("node") or x.node or "",
                       message=f"SLURM job {handle.job_id} {what} {ended} (job stderr: {log}{hint})")

    def cancel(self, handle: Handle) -> None:
        x = job_state(handle)
        if x.outcome is not None or x.cancelled:
            return
        why = self._scancel(handle.job_id)
        if why:
            # the job may run on: say so where the attempt's record points (its log), and
            # stay uncancelled so that a later cancel tries again
            x.cancel_error = why
            _append_line(handle.spec.log_path, f"harness(slurm): scancel {handle.job_id} failed ({why}); the job "
                                               f"may still run: check it with squeue, scancel it by hand")
            return
        x.cancelled = True

    @staticmethod
    def _scancel(job_id: str) -> str:
        """"" once SLURM took the cancel (scancel of an ended job is no error), else why not."""
        why = ""
        for attempt in range(2):
            try:
                p = subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.SubprocessError) as e:
                why = f"scancel: {e}"
            else:
                # some versions fail on a job that has ended or that SLURM forgot: nothing to stop
                if p.returncode == 0 or any(w in p.stderr.lower() for w in ("already completing or completed",
                                                                             "invalid job id")):
                    return ""
                why = (p.stderr.strip().splitlines() or [f"scancel exit code {p.returncode}"])[-1]
            if attempt == 0:
                time.sleep(1.0)  # a controller that is restarting
        return why

    def reattach(self, run_dir: Path, job_id: str | None, spec: LaunchSpec) -> Handle | None:
        """The job of an attempt that an earlier, killed runner started.

        ``job_id`` empty: the runner died between sbatch and saving the id; the job is
        then found by its comment (the run folder) among the jobs squeue still lists.
        Returns None when SLURM no longer knows the job and it left no result. A job
        whose submission file cannot be read is not presumed gone (it may still run,
        and redoing the attempt would run it twice): that is a UserError naming it.
        """
        run_dir = Path(run_dir).resolve()
        job_id = str(job_id or "").strip()
        try:
            if not job_id:
                found = self._find_active(COMMENT_PREFIX + str(run_dir), run_dir)
                if found is None:
                    return None
                job_id, token = found
            elif not job_id.isdigit():
                return None
            else:
                token = self._submitted_token(job_id, run_dir)
                if token is None:
                    return None  # not our attempt's job (or its files are gone)
        except UnreadableJob as e:
            if not job_id:
                raise _user_error(f"slurm backend: cannot tell whether the attempt in {run_dir} still has a SLURM "
                                  f"job ({e}); run again once squeue answers") from None
            raise _user_error(f"slurm backend: cannot tell whether SLURM job {job_id} is the attempt in "
                              f"{run_dir}: its submission file is unreadable ({e}); check it with squeue/sacct, "
                              f"scancel it if it still runs, then move the run folder aside and run again") from None
        handle = self._handle(spec, job_id, token, adopted=True)
        import submitit
        submitted = submitit.SlurmJob(folder=self.folder, job_id=job_id).paths.submitted_pickle
        state = job_state(handle)
        state.started_at = _mtime_iso(submitted) or state.started_at
        handle.extra["started_at"] = state.started_at
        if self._load_result(handle, force=True) is not None or state.result_error:
            return handle  # ended; an unreadable result is poll's to report, not a reason to redo
        st = self.status.get(job_id, fresh=True)["state"]
        if st == GONE:
            self.status.forget(job_id)
            return None
        return handle  # queued, running, or ended without result: poll says which

    def close(self) -> None:
        self.status.tracked.clear()


# --------------------------------------------------------------------------------------------

def _submit_errors() -> tuple[type[BaseException], ...]:
    """What a refused submission raises: sbatch's error (submitit wraps it), an sbatch that
    cannot run, an answer without a job id. Anything else is a bug and keeps its traceback."""
    from submitit.core import utils
    return utils.UncompletedJobError, utils.FailedSubmissionError, OSError, subprocess.SubprocessError


def _user() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER", "")


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # submitit's FailedJobError puts sbatch's stderr last
    for ln in reversed(lines):
        if "error" in ln.lower():
            return ln
    return lines[0] if lines else type(e).__name__


def _append_line(path, text: str) -> None:
    try:
        with open(path, "a") as f:
            f.write(text + "\n")
    except OSError:
        pass  # the log's folder is gone or read-only: the runner reports that itself when it writes there


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
    return lines[-1] if lines else ""


def _tail_line(path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return _last_line(text)[:300]


def _mtime_iso(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="milliseconds")
    except OSError:
        return None
