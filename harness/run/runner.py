"""Run an experiment: launch attempts through a backend, write one record per attempt.

The runner decides *what* runs next (order, retries, resume, early stopping) and
turns each finished attempt into a ``RunRecord``. It never computes p-values
(a ``decider`` does, for ``--until-decisive``) and never prints: it emits the events
of ``harness.run.events`` (one dataclass per kind) that ``progress`` renders.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from harness.run import events as ev
from harness.run import pairing
from harness.run import retry
from harness.run.backends.base import Backend, Handle, LaunchSpec, Outcome
from harness.run.backends.local import end_leftovers, now_iso
from harness.logs.classify import classify
from harness.logs.logparse import LogParser, LogSummary, parse_file
from harness.records import COMPLETED, RunRecord, atomic_write_text, dumps
from harness.data.spec import Experiment, Hypothesis
from harness.data.store import Slot, Store
from harness.thresholds import RETRIES, pick

POLL_S = 0.05
SCRIPT_FILES = "script-files"   # what the script wrote in its working directory, kept per attempt
RUN_MARKER = "HARNESS_RUN_DIR"  # in every run's environment: finds its processes, even detached ones


class Stopped(Exception):
    """The runner was stopped (Ctrl-C, SIGTERM); ``runs`` were running and are marked interrupted."""

    def __init__(self, why: str, runs: list[tuple[str, int, int]]) -> None:
        super().__init__(why)
        self.why = why
        self.runs = runs


class Decider(Protocol):
    """Early stopping: after every completed run, which arms still need runs."""

    def look(self, records: dict[str, list[RunRecord]]):  # -> object with .need, .done, .lines
        ...


@dataclass
class Options:
    runs: int | None = None          # per hypothesis; None: the experiment's
    order: str | None = None
    timeout_s: float | None = None
    retries: int | None = None
    compile_cache: bool | None = None


@dataclass
class _Job:
    hyp: Hypothesis
    index: int
    attempt: int
    order: int
    run_dir: Path
    handle: Handle
    parser: LogParser
    tail_pos: int = 0


def run_id(index: int, attempt: int) -> str:
    return f"{index:03d}-{attempt}"


class Runner:
    def __init__(self, exp: Experiment, store: Store, backend: Backend, base_dir: Path,
                 source_text: str, options: Options | None = None,
                 on_event: Callable[[object], None] = lambda e: None,
                 decider: Decider | None = None, want_steps: bool = False) -> None:
        self.exp = exp
        self.store = store
        self.backend = backend
        self.base = Path(base_dir).resolve()
        self.source_text = source_text
        self.opt = options or Options()
        self.emit = on_event
        self.decider = decider
        self.want_steps = want_steps
        self.runs = self.opt.runs or exp.runs
        self.retries = pick(self.opt.retries, exp.retries, RETRIES)
        self.timeout = pick(self.opt.timeout_s, exp.timeout, None)
        cache = pick(self.opt.compile_cache, exp.compile_cache, True)
        self.cache_dir = (store.root / ".cache").resolve() if cache else None
        self.order = exp.launch_order(self.runs, self.opt.order)
        # paired design on clusters: the runs of one index share a node (harness/run/pairing.py)
        self.pairing_mode = pairing.mode(exp.pairing, backend.may_span_nodes)
        self.pairing = None
        if self.pairing_mode == pairing.NODE:
            order_name = self.opt.order or exp.order
            pairing.check_order(order_name, self.pairing_mode)
            if order_name == "interleaved":
                self.order = pairing.alternate(self.order)
            self.pairing = pairing.Pairing([h.name for h in exp.hypotheses], backend.node_usable)
        self._git = _git_commit(self.base)
        self._host_gpus: dict | None = None
        self.look = None
        self.look_done = False
        self.ran_here: set[str] = set()      # run folders of attempts launched by this invocation
        self.skipped: dict[tuple[str, int], RunRecord] = {}

    # -- commands ------------------------------------------------------------------------
    def commands(self) -> list[tuple[str, int, dict, list[str]]]:
        """(hypothesis, index, env, argv) for every run, in launch order (for --dry-run)."""
        out = []
        for hyp_name, index in self.order:
            hyp = self.exp.hypothesis(hyp_name)
            out.append((hyp_name, index, self._env(hyp, index), hyp.argv(hyp.script)))
        return out

    def _env(self, hyp: Hypothesis, index: int) -> dict[str, str]:
        env = dict(hyp.env)
        env["SEED"] = str(self.exp.seed_for(index))
        env["PYTHONUNBUFFERED"] = "1"  # lines reach log.txt as they are printed
        if self.cache_dir is not None:
            # one compile cache for all runs of the experiment: run 2..N skip most compilation
            env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.cache_dir / "inductor"))
            env.setdefault("TRITON_CACHE_DIR", str(self.cache_dir / "triton"))
        return env

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> dict[tuple[str, int], Slot]:
        self.store.lock()
        try:
            # read every stored record first: a corrupt one stops us before anything is written
            slots = self.store.slots([h.name for h in self.exp.hypotheses])
            self.store.freeze(self.exp, self.source_text, check_only=True)  # refused: nothing touched
            # trees an earlier runner left running end first: before their folders are set
            # aside, their logs read, or their GPUs given to a new attempt
            for slot in slots.values():
                for run_dir in slot.orphans:
                    self._end_leftovers(run_dir)
            aside = self.store.freeze(self.exp, self.source_text)
            if aside:
                self.emit(ev.Aside(folder=str(aside)))
                slots = self.store.slots([h.name for h in self.exp.hypotheses])
            self.store.clean()
            plan_path = self.store.sequential_path
            if self.decider is not None and hasattr(self.decider, "to_dict") and not plan_path.exists():
                atomic_write_text(plan_path, json.dumps(self.decider.to_dict(), indent=2) + "\n")
            return self._run(slots)
        finally:
            self.store.unlock()
            self.backend.close()

    def _run(self, slots: dict[tuple[str, int], Slot]) -> dict[tuple[str, int], Slot]:
        running: list[_Job] = self._recover(slots)
        order_of = {s: i for i, s in enumerate(self.order)}
        queue = deque(s for s in self.order if self._needs_attempt(slots.get(s)) and
                      not any((j.hyp.name, j.index) == s for j in running))
        self.emit(ev.Plan(experiment=self.exp.name, results=str(self.store.root), total=len(self.order),
                          done=sum(1 for s in self.order if slots.get(s) and slots[s].done),
                          pending=len(queue) + len(running), pairing=self.pairing_mode))
        self._update_look(slots)
        stop_reason = ""
        deferred: list = []     # slots of arms not needed now, kept for a decider that may revisit
        # a hypothesis whose runs failed deterministically with the same error (usage error,
        # missing file...): its other runs would fail the same way, so none is launched
        blocked: dict[str, RunRecord] = {}
        certain: dict[str, RunRecord] = {}  # the first deterministic failure of each arm
        try:
            while queue or running:
                while queue and len(running) < self.backend.max_parallel and not stop_reason:
                    if self.look is not None and self.look.done:
                        stop_reason = "decided"
                        break
                    node = None
                    if self.pairing is not None:
                        pick = self.pairing.pick(queue, slots, {(j.hyp.name, j.index) for j in running})
                        if pick is None:
                            break   # every queued run waits for its partner to finish
                        key, node = pick.key, pick.node
                        queue.remove(key)
                        if pick.broken:
                            self.emit(ev.Unpaired(hypothesis=key[0], index=key[1], why=pick.broken))
                    else:
                        key = queue.popleft()
                    if self.look is not None and not self.look.need.get(key[0], True):
                        if getattr(self.decider, "revisit", False):   # a sweep may need the arm again
                            deferred.append(key)
                            continue
                        self.emit(ev.Skip(hypothesis=key[0], index=key[1], why="arm decided"))
                        continue
                    if key[0] in blocked:
                        self.skipped[key] = blocked[key[0]]
                        self.emit(ev.Skip(hypothesis=key[0], index=key[1],
                                          why=f"not launched: run #{blocked[key[0]].index} of "
                                              f"{key[0]} failed in a way a retry cannot fix"))
                        continue
                    slot = slots.setdefault(key, Slot(*key))
                    running.append(self._start(key[0], key[1], self._free_attempt(slot), order_of[key], node))
                if not running:
                    break
                time.sleep(POLL_S)
                for job in list(running):
                    if self.want_steps:
                        self._tail(job)
                    outcome = self.backend.poll(job.handle)
                    if outcome is None:
                        continue
                    slot = slots.setdefault((job.hyp.name, job.index), Slot(job.hyp.name, job.index))
                    rec = self._finish(job, outcome, slot)
                    running.remove(job)  # only once its result is stored (Ctrl-C in between)
                    slot.records.append(rec)
                    again = rec.status not in COMPLETED and self._needs_attempt(slot)
                    if rec.status == "failed" and not rec.retryable:
                        # two runs of one arm failing alike (a typo in its args): the others would too
                        first = certain.setdefault(job.hyp.name, rec)
                        if first is not rec and first.error == rec.error:
                            blocked.setdefault(job.hyp.name, rec)
                    self.emit(ev.Finish(record=rec, total=len(self.order), settled=not again))
                    if again:
                        self.emit(ev.Retry(record=rec, failures=slot.failures, retries=self.retries))
                        queue.appendleft((job.hyp.name, job.index))
                    self._update_look(slots)
                    if deferred and self.look is not None:
                        back = [k for k in deferred if self.look.need.get(k[0], True)]
                        deferred = [k for k in deferred if k not in back]
                        queue.extendleft(reversed(back))
                if self.want_steps and running:
                    self.emit(ev.Tick(jobs=tuple((j.hyp.name, j.index, j.parser.summary.last_step,
                                                  j.parser.summary.total_steps) for j in running)))
        except KeyboardInterrupt as e:
            why = str(e) or "Ctrl-C"
            stopped = self._stop_all(running, f"cancelled by the user ({why})")
            raise Stopped(why, stopped) from None
        except BaseException:
            # disk full, permission...: end every run's tree (no orphan on the GPUs); their
            # folders hold launch.json, so the next invocation records and redoes them
            for job in running:
                self.backend.cancel(job.handle)
            raise
        self.look_done = bool(self.look is not None and self.look.done)
        self.emit(ev.Done(slots=slots, stop_reason=stop_reason, look=self.look, without=self.without(slots)))
        return slots

    def _stop_all(self, running: list[_Job], why: str) -> list[tuple[str, int, int]]:
        for job in running:
            self.backend.cancel(job.handle)
        stopped = []
        for job in running:
            rec = self._write_interrupted(job.run_dir, why)
            if rec is None or rec.status not in COMPLETED:
                stopped.append((job.hyp.name, job.index, job.attempt))
        return stopped

    def without(self, slots: dict[tuple[str, int], Slot]) -> list[RunRecord | None]:
        """For every planned run left without a result: its last record (None: never ran).

        Runs the sequential plan no longer needs are not missing: the design stopped them.
        """
        if self.look is not None and self.look.done:
            return []
        out = []
        for key in self.order:
            slot = slots.get(key)
            if slot is not None and slot.done is not None:
                continue
            if self.look is not None and not self.look.need.get(key[0], True):
                continue
            last = slot.records[-1] if slot is not None and slot.records else self.skipped.get(key)
            out.append(last)
        return out

    def _needs_attempt(self, slot: Slot | None) -> bool:
        if slot is None:
            return True
        if slot.done is not None or slot.failures > self.retries:
            return False
        # a deterministic failure is not retried within one invocation; a later one
        # (after the user fixed the cause) tries once more
        last = slot.records[-1] if slot.records else None
        return not (last is not None and not last.retryable and (last.hypothesis, last.run_id) in self.ran_here)

    def _free_attempt(self, slot: Slot) -> int:
        attempt = slot.next_attempt
        while self.store.attempt_dir(slot.hypothesis, slot.index, attempt).exists():
            attempt += 1  # a folder left with neither launch.json nor result.json
        return attempt

    def _update_look(self, slots: dict[tuple[str, int], Slot]) -> None:
        if self.decider is None:
            return
        per_arm: dict[str, list[RunRecord]] = {h.name: [] for h in self.exp.hypotheses}
        done = [s.done for s in slots.values() if s.done is not None]
        for rec in sorted(done, key=lambda r: (r.order if r.order is not None else 0, r.index)):
            per_arm.setdefault(rec.hypothesis, []).append(rec)
        self.look = self.decider.look(per_arm)
        if getattr(self.look, "new", None) and hasattr(self.decider, "to_dict"):
            # decisions are final once made: stored as they are made (issue 12)
            atomic_write_text(self.store.sequential_path,
                              json.dumps(self.decider.to_dict(), indent=2) + "\n")
        self.emit(ev.Look(look=self.look))

    # -- one attempt -------------------------------------------------------------------------
    def _start(self, hyp_name: str, index: int, attempt: int, order: int, node: str | None = None) -> _Job:
        hyp = self.exp.hypothesis(hyp_name)
        run_dir = self.store.attempt_dir(hyp_name, index, attempt)
        run_dir.mkdir(parents=True)
        self.ran_here.add((hyp_name, run_dir.name))
        workdir = self._workdir(run_dir)
        script = Path(hyp.script)
        src = script if script.is_absolute() else self.base / script
        snapshot = run_dir / ("snapshot-" + script.name)
        shutil.copy2(src, snapshot)
        # the scratch cwd mirrors the root's entries only: a path out of the root ('../x.py')
        # would resolve inside the run folder, so it is given absolute
        argv = self._probed(hyp.argv(str(src) if ".." in script.parts else hyp.script), hyp, run_dir)
        env = self._env(hyp, index)
        env[RUN_MARKER] = str(run_dir)
        spec = LaunchSpec(run_dir=run_dir, workdir=workdir, argv=argv, env=env,
                          log_path=run_dir / "log.txt", timeout_s=self.timeout, nproc=hyp.nproc_per_node,
                          node=node)
        launch = {"backend": self.backend.name, "job_id": None, "hypothesis": hyp_name, "index": index,
                  "attempt": attempt, "order": order, "argv": argv, "env": env, "workdir": str(workdir),
                  "pairing": self.pairing_mode, "node": node,
                  "host": socket.gethostname()}
        # written before the start: a runner killed in between leaves an attempt resume can see
        atomic_write_text(run_dir / "launch.json", dumps(launch) + "\n")
        handle = self.backend.start(spec)
        launch["job_id"] = handle.job_id
        launch["started_at"] = handle.extra.get("started_at") or now_iso()
        atomic_write_text(run_dir / "launch.json", dumps(launch) + "\n")
        self.emit(ev.Start(hypothesis=hyp_name, index=index, attempt=attempt, order=order,
                           total=len(self.order), run_dir=str(run_dir)))
        return _Job(hyp, index, attempt, order, run_dir, handle, LogParser(str(spec.log_path)))

    def _probed(self, argv: list[str], hyp: Hypothesis, run_dir: Path) -> list[str]:
        """With ``speed_probe``: the fixed workload runs first, on the run's node, then execs the run."""
        if not self.exp.speed_probe:
            return argv
        probe = Path(__file__).resolve().parent / "probe.py"
        return [sys.executable, str(probe), "--out", str(run_dir / "probe.json"),
                "--nproc", str(hyp.nproc_per_node), "--", *argv]

    def _workdir(self, run_dir: Path) -> Path:
        """A scratch cwd that mirrors the project root except ``logs/``.

        Relative paths (data/, sibling modules) resolve as from the root, while a
        script that writes ``logs/<uuid>.txt`` writes into this run's own folder.
        """
        work = run_dir / SCRIPT_FILES
        work.mkdir()
        for entry in os.listdir(self.base):
            if entry != "logs":
                os.symlink(self.base / entry, work / entry)
        return work

    def _tail(self, job: _Job) -> None:
        try:
            with open(job.handle.spec.log_path, "rb") as f:
                f.seek(job.tail_pos)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        for line in data[:end].split(b"\n"):
            job.parser.feed(line)
        job.tail_pos += end + 1

    def _finish(self, job: _Job, outcome: Outcome, slot: Slot) -> RunRecord:
        summary, log_name = self._collect_and_parse(job.run_dir)
        rec = self._record(job.hyp, job.index, job.attempt, job.order, job.run_dir, summary, log_name,
                           outcome, job.handle.spec, job.handle.job_id or None)
        if rec.status == "failed":
            previous = next((r for r in reversed(slot.records) if r.status == "failed"), None)
            rec.retryable = retry.retryable(rec.error, summary.step_lines > 0, outcome,
                                            previous.error if previous else None)
        rec.save(job.run_dir / "result.json")
        return rec

    def _collect_and_parse(self, run_dir: Path) -> tuple[LogSummary, str]:
        """Keep what the script wrote; parse the most complete of its logs and log.txt.

        The scratch folder's mirror links are removed; every other entry (the script's
        ``logs/``, checkpoints, ...) stays where the script put it, under ``script-files/``,
        so nothing is renamed, overwritten or followed out of the run folder.
        """
        work = run_dir / SCRIPT_FILES
        if work.is_dir() and not work.is_symlink():
            for entry in os.listdir(work):
                p = work / entry
                if p.is_symlink() and os.readlink(p) == str(self.base / entry):
                    p.unlink()  # ours: a mirror of the project root
            if not os.listdir(work):
                work.rmdir()
        names = ["log.txt"] + [str(p.relative_to(run_dir)) for p in _script_logs(work / "logs")]
        best: tuple[LogSummary, str] | None = None
        best_rank: tuple = ()
        for name in names:
            try:
                s = parse_file(run_dir / name)
            except OSError:
                continue
            # prefer a log with a result; among equals, the script's own (it has nvidia-smi)
            rank = (classify(s).completed, s.step_lines, name != "log.txt")
            if best is None or rank > best_rank:
                best, best_rank = (s, name), rank
        return best if best else (LogSummary(path=str(run_dir / "log.txt")), "log.txt")

    def _record(self, hyp: Hypothesis, index: int, attempt: int, order: int, run_dir: Path,
                s: LogSummary, log_name: str, outcome: Outcome, spec: LaunchSpec | None,
                job_id: str | None = None) -> RunRecord:
        log_path = run_dir / log_name
        verdict = classify(s, hyp.steps)   # the one classifier: analysis reads logs the same way
        error = ""
        if outcome.timed_out:
            status, why = "timeout", outcome.message or "timed out"
        elif verdict.completed:
            status = verdict.record_status
            why = "" if outcome.exit_code in (0, None) else f"finished, then exited with code {outcome.exit_code}"
        else:
            status = "failed"
            # the script's own words name the cause (a typo in args, a missing file); its
            # traceback is on stderr, so in log.txt when the figures came from its own log
            error = verdict.error_line or (self._error_line(run_dir / "log.txt") if log_name != "log.txt" else "")
            why = verdict.message
            if error and error not in why:
                why = f"{why}; the script said: {error}"
            if outcome.exit_code not in (0, None):
                why = f"exit code {outcome.exit_code}; {why}"
            if outcome.message:
                why = f"{outcome.message}; {why}"
        snapshot = next(run_dir.glob("snapshot-*"), None)
        return RunRecord(
            run_id=run_dir.name, hypothesis=hyp.name, index=index, seed=self.exp.seed_for(index),
            status=status, attempt=attempt, order=order, exit_code=outcome.exit_code,
            final_step=s.final_step, expected_steps=hyp.steps if hyp.steps is not None else s.total_steps,
            val_loss=s.val_loss, train_time_s=s.train_time_s, step_avg_ms=s.step_avg_ms,
            peak_mem_mib=s.peak_mem_mib, wall_s=round(outcome.wall_s, 3), started_at=outcome.started_at,
            finished_at=outcome.finished_at, host=outcome.host, gpus=self._gpus(s),
            torch_version=s.torch_version, cuda_version=s.cuda_version,
            script_sha256=_sha256(snapshot) if snapshot else hyp.script_sha256, git_commit=self._git,
            command=list(spec.argv) if spec else [], backend=self.backend.name,
            job_id=job_id, message=f"{why} (log: {log_path})" if why else "",
            log=log_name, val_curve=[[int(a), b] for a, b in s.val_curve], probe_s=_probe_s(run_dir), error=error)
    def _error_line(self, log: Path) -> str:
        try:
            return classify(parse_file(log)).error_line
        except OSError:
            return ""

    def _gpus(self, s: LogSummary) -> dict:
        if s.gpu_names:
            return {"names": list(s.gpu_names), "count": len(s.gpu_names)}
        if self._host_gpus is None:
            self._host_gpus = _host_gpus()
        return self._host_gpus

    # -- resume --------------------------------------------------------------------------
    def _recover(self, slots: dict[tuple[str, int], Slot]) -> list[_Job]:
        """Attempts started by an earlier runner that never wrote a result."""
        running = []
        for slot in slots.values():
            for run_dir in slot.orphans:
                job = self._reattach(slot, run_dir)
                if job is not None:
                    running.append(job)
                    continue
                rec = self._write_interrupted(run_dir, "never finished: the runner stopped during this attempt")
                if rec is not None:
                    slot.records.append(rec)
            slot.orphans = []
        return running

    def _reattach(self, slot: Slot, run_dir: Path) -> _Job | None:
        try:
            launch = json.loads((run_dir / "launch.json").read_text())
        except (OSError, ValueError):
            return None
        if launch.get("backend") != self.backend.name:
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
            atomic_write_text(run_dir / "launch.json", json.dumps(launch, indent=2) + "\n")
        self.emit(ev.Reattach(hypothesis=hyp.name, index=slot.index, job_id=launch["job_id"]))
        return _Job(hyp, slot.index, launch["attempt"], launch["order"], run_dir, handle,
                    LogParser(str(spec.log_path)))

    def _write_interrupted(self, run_dir: Path, why: str) -> RunRecord | None:
        """The record of an attempt that ended with its runner; its log decides the status."""
        if (run_dir / "result.json").exists():
            return None  # it finished after all: its record stands
        try:
            launch = json.loads((run_dir / "launch.json").read_text())
        except (OSError, ValueError):
            launch = {}
        if not isinstance(launch, dict) or launch.get("hypothesis") not in {h.name for h in self.exp.hypotheses}:
            return None
        hyp = self.exp.hypothesis(launch["hypothesis"])
        self._end_leftovers(run_dir, launch)
        summary, log_name = self._collect_and_parse(run_dir)
        outcome = Outcome(exit_code=None, timed_out=False, started_at=launch.get("started_at", ""),
                          finished_at=now_iso(), wall_s=0.0, host=launch.get("host") or socket.gethostname(),
                          message=why)
        rec = self._record(hyp, launch["index"], launch["attempt"], launch.get("order", 0), run_dir,
                           summary, log_name, outcome, None, launch.get("job_id") or None)
        rec.command = launch.get("argv", [])
        if rec.status in COMPLETED:
            # its log reached the final validation before the runner stopped: the run is done
            rec.message = f"recorded from its complete log after the runner stopped ({why})"
        else:
            rec.status = "interrupted"
            rec.error = ""
            rec.message = f"{why} (log: {run_dir / log_name})"
        rec.save(run_dir / "result.json")
        return rec


    def _end_leftovers(self, run_dir: Path, launch: dict | None = None) -> None:
        """A local trainer that forked or ignored SIGTERM may outlive its runner: end it."""
        if launch is None:
            try:
                launch = json.loads((run_dir / "launch.json").read_text())
            except (OSError, ValueError):
                return
        if not isinstance(launch, dict) or launch.get("backend", "local") != "local":
            return
        if launch.get("host") in (None, socket.gethostname()):
            end_leftovers(str(run_dir), launch.get("job_id"))


def _script_logs(folder: Path) -> list[Path]:
    """Regular files under the script's logs/ folder, never through a link."""
    if folder.is_symlink() or not folder.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):  # os.walk does not follow links
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not p.is_symlink() and p.is_file():
                out.append(p)
    return sorted(out)


def _probe_s(run_dir: Path) -> float | None:
    """The speed probe's time, when it ran and succeeded (harness/run/probe.py wrote probe.json)."""
    try:
        value = json.loads((run_dir / "probe.json").read_text()).get("probe_s")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_commit(base: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=base, capture_output=True,
                             text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=base, timeout=30).returncode
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _host_gpus() -> dict:
    """GPUs of this host when the log does not list them (nvidia-smi, if present)."""
    if shutil.which("nvidia-smi") is None:
        return {"names": [], "count": 0}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    except (OSError, subprocess.SubprocessError):
        names = []
    return {"names": names, "count": len(names)}
