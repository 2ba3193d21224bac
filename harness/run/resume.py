"""Resume: the attempts an earlier runner started and never recorded.

Each is either found again through the backend (a SLURM job still queued, running or
finished) and watched as if started here, or recorded from what it left: its log
decides whether it finished before the runner stopped; otherwise it is
``interrupted`` and redone. Local trees a dead runner left behind are ended first.
"""
from __future__ import annotations

import socket
import time
from datetime import datetime
from pathlib import Path

from harness.data.spec import Experiment
from harness.data.store import RESULT_FILE, Slot, Store, read_launch
from harness.records import COMPLETED, RunRecord
from harness.run.attempt import Job
from harness.run.backends.base import Backend, LaunchSpec, Outcome
from harness.run.backends.local import end_leftovers, now_iso
from harness.run.record import Recorder
from harness.run.tail import Arrivals, Tail


class Resume:
    def __init__(self, exp: Experiment, store: Store, backend: Backend, recorder: Recorder,
                 timeout: float | None) -> None:
        self.exp = exp
        self.store = store
        self.backend = backend
        self.recorder = recorder
        self.timeout = timeout

    def recover(self, slots: dict[tuple[str, int], Slot]) -> list[Job]:
        """Attempts started by an earlier runner that never wrote a result: the ones the
        backend still has, to watch; the others are recorded here."""
        running = []
        for slot in slots.values():
            for run_dir in slot.orphans:
                job = self.reattach(slot, run_dir)
                if job is not None:
                    running.append(job)
                    continue
                rec = self.interrupted(run_dir, "never finished: the runner stopped during this attempt")
                if rec is not None:
                    slot.records.append(rec)
            slot.orphans = []
        return running

    def reattach(self, slot: Slot, run_dir: Path) -> Job | None:
        launch = read_launch(run_dir)
        if launch is None or launch.get("backend") != self.backend.name:
            return None
        hyp = self.exp.hypothesis(slot.hypothesis)
        spec = LaunchSpec(run_dir=run_dir, workdir=Path(launch["workdir"]), argv=launch["argv"],
                          env=launch["env"], log_path=run_dir / "log.txt", timeout_s=self.timeout,
                          nproc=hyp.nproc_per_node)
        # an empty job id: the runner died between submitting and recording it; the
        # backend may still find the job (SLURM: by the run folder in its comment)
        handle = self.backend.reattach(run_dir, launch.get("job_id") or "", spec)
        if handle is None:
            return None
        if handle.job_id and handle.job_id != launch.get("job_id"):
            launch["job_id"] = handle.job_id
            self.store.write_launch(run_dir, launch)
        return Job(hyp, slot.index, launch["attempt"], launch["order"], run_dir, handle, Tail(spec.log_path))

    def interrupted(self, run_dir: Path, why: str, arrivals: Arrivals | None = None,
                    wall_s: float | None = None, ended_now: bool = False) -> RunRecord | None:
        """The record of an attempt that ended with its runner; its log decides the status.

        ``arrivals``, ``wall_s``: its log's arrival times and its seconds since launch, when
        this runner launched it (its cost). Else its wall time is read from its files:
        ``ended_now`` (this runner stops it now) runs it to now; otherwise it ended with an
        earlier runner, at the last write of its log.
        """
        if (run_dir / RESULT_FILE).exists():
            return None  # it finished after all: its record stands
        launch = read_launch(run_dir)
        if launch is None or launch.get("hypothesis") not in {h.name for h in self.exp.hypotheses}:
            return None
        hyp = self.exp.hypothesis(launch["hypothesis"])
        self.end_leftovers(run_dir, launch)
        summary, log_name = self.recorder.logs(run_dir)
        started = launch.get("started_at", "")
        wall = wall_s if wall_s else _wall_s(started, run_dir / "log.txt", ended_now)
        outcome = Outcome(exit_code=None, timed_out=False, started_at=started,
                          finished_at=now_iso(), wall_s=wall,
                          host=launch.get("host") or socket.gethostname(), message=why)
        rec = self.recorder.build(hyp, launch["index"], launch["attempt"], launch.get("order", 0), run_dir,
                                  summary, log_name, outcome, None, launch.get("job_id") or None,
                                  arrivals, None)
        rec.command = launch.get("argv", [])
        if rec.status in COMPLETED:
            # its log reached the final validation before the runner stopped: the run is done
            rec.message = f"recorded from its complete log after the runner stopped ({why})"
        else:
            rec.status = "interrupted"
            rec.error = ""
            rec.message = f"{why} (log: {run_dir / log_name})"
        self.store.write_record(run_dir, rec)
        return rec

    def end_leftovers(self, run_dir: Path, launch: dict | None = None) -> None:
        """A local trainer that forked or ignored SIGTERM may outlive its runner: end it."""
        if launch is None:
            launch = read_launch(run_dir)
        if launch is None or launch.get("backend", "local") != "local":
            return
        if launch.get("host") in (None, socket.gethostname()):
            end_leftovers(str(run_dir), launch.get("job_id"))


def _wall_s(started_at: str, log: Path, ended_now: bool) -> float:
    """Seconds from the attempt's start to its end: now, or its log's last write."""
    try:
        t0 = datetime.fromisoformat(started_at).timestamp()
    except (TypeError, ValueError):
        return 0.0          # launch.json without a start time: the runner died before it
    if ended_now:
        end = time.time()
    else:
        try:
            end = log.stat().st_mtime
        except OSError:
            return 0.0      # no log: nothing ran
    return max(0.0, end - t0)
