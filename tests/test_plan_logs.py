"""`harness plan` on a plain folder of upstream logs, grouped by final step count."""
from conftest import ROOT, harness

RECORD = ROOT / "tests" / "fixtures" / "record_logs"


def test_plan_from_record_logs_grouped_by_steps(tmp_path, cli):
    out = cli("plan", RECORD, "--group-by", "steps", "--control", "1600", "--max-runs", "10",
                  "--sims", "2000", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1575 vs 1600 from 10 + 10 runs" in out.stdout
    # the pilot's sigmas, then their 90% upper confidence bounds, which the plan uses
    assert "time 0.0904 -> 0.1329 / 0.0533 -> 0.0783 s" in out.stdout
    assert "sigma 0.1329 / 0.0783 s, delta -0.3925 s -> 7 runs per arm" in out.stdout
    assert "fixed design: 12 runs per arm" in out.stdout
    bad = cli("plan", RECORD, "--group-by", "steps", "--control", "1234", cwd=tmp_path)
    assert bad.returncode == 2 and "no such group" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_plan_names_groups_and_hints_at_group_by(tmp_path, cli):
    out = cli("plan", RECORD, "--group-by", "steps", "--name", "1600=H0", "--name", "1575=H1",
              "--control", "H0", "--max-runs", "10", "--sims", "500", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "H1 vs H0 from 10 + 10 runs" in out.stdout
    bad = cli("plan", RECORD, "--control", "1600", cwd=tmp_path)
    assert bad.returncode == 2 and "use --group-by steps" in bad.stderr
