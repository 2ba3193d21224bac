"""Progress rendering: a live line on terminals, one line per event elsewhere."""
import io

from harness.run.progress import Progress
from harness.records import RunRecord
from harness.run.runner import Event


def _rec(hyp, index, status="ok", **kw):
    return RunRecord(run_id=f"{index:03d}-1", hypothesis=hyp, index=index, seed=index, status=status,
                     val_loss=3.2771, train_time_s=97.9, wall_s=120.0, **kw)


def test_plain_mode_prints_one_line_per_event():
    out = io.StringIO()
    p = Progress(out, live=False)
    p(Event("plan", {"experiment": "e", "results": "r", "total": 4, "done": 1, "pending": 3}))
    p(Event("start", {"hypothesis": "H1", "index": 0, "attempt": 1, "order": 1, "total": 4, "run_dir": "d"}))
    p(Event("tick", {"jobs": [("H1", 0, 5, 10)]}))
    p(Event("finish", {"record": _rec("H1", 0), "total": 4}))
    p(Event("finish", {"record": _rec("H0", 1, "failed", message="exit code 1 (log: x/log.txt)"), "total": 4}))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("experiment e: results in r; 1 of 4 runs already done, 3 to run")
    assert lines[1] == "[1/3] start H1 #0  -> d"
    assert lines[2] == "[1/3] H1 #0: ok val_loss 3.2771 train_time 97.900 s (wall 120.0 s)"
    assert lines[3] == "[2/3] H0 #1: FAILED: exit code 1 (log: x/log.txt)"
    assert "\r" not in out.getvalue()  # no redraws in logs


def test_live_mode_shows_step_elapsed_and_eta():
    out = io.StringIO()
    p = Progress(out, live=True)
    p(Event("plan", {"experiment": "e", "results": "r", "total": 3, "done": 0, "pending": 3}))
    p(Event("finish", {"record": _rec("H0", 0), "total": 3}))  # one run took 120 s of wall
    p(Event("start", {"hypothesis": "H1", "index": 0, "attempt": 1, "order": 1, "total": 3, "run_dir": "d"}))
    p(Event("tick", {"jobs": [("H1", 0, 50, 100)]}))
    last = out.getvalue().split("\r")[-1]
    # half of this run and all of the third remain: 1.5 runs x 120 s
    assert "[2/3] H1 #0 step 50/100" in last and "elapsed 0:00" in last and "ETA 3:00" in last
