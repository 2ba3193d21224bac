"""The progress bar of long design work (harness/cli/bar.py, harness/design/progress.py)."""
import io

from harness.cli import bar as B
from harness.design import progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_bar_draws_on_a_terminal_with_eta_and_clears(monkeypatch):
    monkeypatch.setattr(B, "DELAY_S", 0.0)
    out = Tty()
    b = B.Bar(stream=out)
    with progress.reporting(b):
        progress.report("calibrating", 1, 4)
    text = out.getvalue()
    assert "calibrating [" in text and " 25% ETA " in text
    b.close()
    assert out.getvalue().endswith("\r\x1b[K")
    progress.report("outside", 1, 2)          # no callback installed: nothing happens
    assert "outside" not in out.getvalue()


def test_bar_is_quiet_off_a_terminal_with_quiet_and_for_short_work(monkeypatch):
    monkeypatch.setattr(B, "DELAY_S", 0.0)
    for stream, quiet in ((io.StringIO(), False), (Tty(), True)):
        b = B.Bar(stream=stream, quiet=quiet)
        b("x", 1, 2)
        b.close()
        assert stream.getvalue() == ""
    monkeypatch.setattr(B, "DELAY_S", 60.0)   # work shorter than the delay shows nothing
    out = Tty()
    b = B.Bar(stream=out)
    b("x", 1, 2)
    assert out.getvalue() == ""


def test_plan_and_simulate_take_quiet(cli, tmp_path):
    out = cli("simulate", "--time-sigma", "0.09", "--time-delta", "-0.39", "--loss-mean", "3.2784",
              "--loss-sigma", "0.0009", "--sims", "200", "--max-runs", "4", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = cli("plan", "--time-sigma", "0.09", "--time-delta", "-0.39", "--loss-mean", "3.2784",
              "--loss-sigma", "0.0009", "--sims", "200", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
