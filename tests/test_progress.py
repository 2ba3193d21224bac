"""Progress rendering: a live line on terminals, one line per event elsewhere."""
import io

from harness.run.progress import Progress
from harness.records import RunRecord
from harness.run import events as ev


def _rec(hyp, index, status="ok", **kw):
    return RunRecord(run_id=f"{index:03d}-1", hypothesis=hyp, index=index, seed=index, status=status,
                     val_loss=3.2771, train_time_s=97.9, wall_s=120.0, **kw)


def test_plain_mode_prints_one_line_per_event():
    out = io.StringIO()
    p = Progress(out, live=False)
    p(ev.Plan(experiment="e", results="r", total=4, done=1, pending=3))
    p(ev.Start(hypothesis="H1", index=0, attempt=1, order=1, total=4, run_dir="d"))
    p(ev.Tick(jobs=[("H1", 0, 5, 10)]))
    p(ev.Finish(record=_rec("H1", 0), total=4))
    p(ev.Finish(record=_rec("H0", 1, "failed", message="exit code 1 (log: x/log.txt)"), total=4))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("experiment e: results in r; 1 of 4 runs already done, 3 to run")
    assert lines[1] == "[1/3] start H1 #0  -> d"
    assert lines[2] == "[1/3] H1 #0: ok val_loss 3.2771 train_time 97.900 s (wall 120.0 s)"
    assert lines[3] == "[2/3] H0 #1: FAILED: exit code 1 (log: x/log.txt)"
    assert "\r" not in out.getvalue()  # no redraws in logs


def test_live_mode_shows_step_elapsed_and_eta():
    out = io.StringIO()
    p = Progress(out, live=True)
    p(ev.Plan(experiment="e", results="r", total=3, done=0, pending=3))
    p(ev.Finish(record=_rec("H0", 0), total=3))  # one run took 120 s of wall
    p(ev.Start(hypothesis="H1", index=0, attempt=1, order=1, total=3, run_dir="d"))
    p(ev.Tick(jobs=[("H1", 0, 50, 100)]))
    last = out.getvalue().split("\r")[-1]
    # half of this run and all of the third remain: 1.5 runs x 120 s
    assert "[2/3] H1 #0 step 50/100" in last and "elapsed 0:00" in last and "ETA 3:00" in last


def test_every_event_type_has_a_handler_and_an_unknown_one_is_a_type_error():
    # issue 18: events were a kind string dispatched by getattr(self, "on_" + kind) with a
    # no-op default, so a typo dropped the event silently
    import dataclasses

    import pytest
    p = Progress(io.StringIO(), live=False)
    assert set(ev.EVENTS) == set(p.handlers)
    assert all(dataclasses.fields(t) and t.__dataclass_params__.frozen for t in ev.EVENTS)

    @dataclasses.dataclass(frozen=True)
    class Plann:          # a misspelt kind
        experiment: str = "e"
    with pytest.raises(TypeError, match="Plann"):
        p(Plann())


def test_the_runner_emits_only_event_types_of_the_events_module():
    # every emit(...) of the runner builds one of harness.run.events' dataclasses
    import ast
    from pathlib import Path
    src = Path(__file__).resolve().parent.parent / "harness" / "run" / "runner.py"
    built = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "emit"):
            arg = node.args[0]
            assert isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) \
                and isinstance(arg.func.value, ast.Name) and arg.func.value.id == "ev", ast.unparse(node)
            built.add(arg.func.attr)
    names = {t.__name__ for t in ev.EVENTS}
    assert built <= names
    assert names <= built, f"event types never emitted: {names - built}"
