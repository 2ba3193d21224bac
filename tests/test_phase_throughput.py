"""bench/phase_throughput.py: per-phase ms/step from step lines, phases as the record cuts them."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import phase_throughput as pt  # noqa: E402


def write_run(folder: Path, arm: str, idx: int, ms_per_phase, scheduled=12, ext=4, status="ok"):
    run = folder / arm / f"{idx:03d}-1"
    run.mkdir(parents=True)
    t, lines = 0.0, ["step:0/14 val_loss:10.8 train_time:0ms step_avg:0.00ms"]
    for k in range(scheduled + ext):
        t += ms_per_phase[pt.phase_of(k, scheduled)] + (50 if k % 4 == 0 else 0) * (k < 1)
        lines.append(f"step:{k + 1}/{scheduled + ext} train_time:{t:.0f}ms step_avg:{t / (k + 1):.2f}ms")
    (run / "log.txt").write_text("\n".join(lines) + "\n")
    (run / "result.json").write_text(json.dumps({"status": status}))


def test_phases_follow_the_records_thirds_and_extension():
    assert [pt.phase_of(k, 12) for k in range(14)] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 2


def test_table_per_phase_and_ratio(tmp_path):
    write_run(tmp_path, "record", 0, [100, 200, 300, 310])
    write_run(tmp_path, "trainer", 0, [125, 250, 400, 400])
    write_run(tmp_path, "trainer", 1, [999, 999, 999, 999], status="interrupted")  # not counted
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "phase_throughput.py"), str(tmp_path),
                        "--scheduled", "12", "--tokens", "1000,2000,3000", "--markdown"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in r.stdout.splitlines()[2:]]
    rows = {(c[0], c[1]): c[2:] for c in cells}  # tokens/step, runs, ms/step, tokens/s, ratio
    assert rows[("record", "1st third")] == ["1000", "1", "100.0", "10.0k", "1.000"]
    assert rows[("trainer", "1st third")] == ["1000", "1", "125.0", "8.0k", "0.800"]
    assert rows[("trainer", "3rd third")] == ["3000", "1", "400.0", "7.5k", "0.750"]
    # the extension at the last third's tokens; the interrupted run is left out (runs = 1)
    assert rows[("trainer", "extension")] == ["3000", "1", "400.0", "7.5k", f"{310 / 400:.3f}"]
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "phase_throughput.py"), str(tmp_path / "none"),
                        "--scheduled", "12"], capture_output=True, text=True)
    assert r.returncode == 2 and "not a results folder" in r.stderr
