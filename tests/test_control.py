"""`harness control REPO --out DIR`: the control of a new experiment from a speedrun clone's records.

The clone is tests/fixtures/make_record_repo.py's (the ``record_repo`` fixture): its logs
were written by a runnable stand-in record script, so the rebuilt scripts can be compared
with the script that wrote them."""
import datetime as dt
import shutil
import sys
from pathlib import Path

from harness.data import spec, upstream

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import make_record_repo as mrr  # noqa: E402

UNTIE = "records/track_1_short/2026-01-26-UntieValueEmbeddings"


def add_h1(exp: Path) -> Path:
    """What the user does next: copy the script and uncomment the H1 template."""
    text = exp.read_text()
    shutil.copy(exp.parent / "train_gpt.py", exp.parent / "train_gpt_h1.py")
    head, tmpl = text.split("# [[hypothesis]]\n")
    exp.write_text(head + "[[hypothesis]]\n" + "".join(l[2:] + "\n" for l in tmpl.splitlines()))
    return exp


def test_latest_record_rebuilt_from_the_prs_logs(tmp_path, cli, record_repo):
    r = cli("control", record_repo, "--out", "ctl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    why = r.stderr.splitlines()
    assert len(why) == 4 and [l.split(":")[0] for l in why] == ["record", "logs", "script", "control"]
    # the latest dated short-track folder; the medium track's newer one and 'notes' are not it
    assert why[0].startswith("record: 2026-01-26-UntieValueEmbeddings (the latest of 4 dated folders")
    assert "mixes its arms (3 at 1600 steps, 3 at 1575 steps)" in why[1] and "1575-step logs" in why[1]
    assert "3 of the 3 logs embed this train_gpt.py" in why[2]
    assert "8x NVIDIA H100 80GB HBM3" in why[3]
    # byte for byte the script that wrote the PR's logs, at its own step count, and its kernels
    assert (tmp_path / "ctl/train_gpt.py").read_text() == mrr.script_text(1575)
    assert (tmp_path / "ctl/triton_kernels.py").read_bytes() == mrr.KERNELS.read_bytes()
    text = (tmp_path / "ctl/experiment.toml").read_text()
    assert "steps = 1575" in text and "nproc_per_node = 8" in text and "# [[hypothesis]]" in text
    assert "8x NVIDIA H100 80GB HBM3" in text and "torch 2.10.0" in text
    # one hypothesis is not an experiment yet: the user adds H1, and then it loads
    exp = spec.load(add_h1(tmp_path / "ctl/experiment.toml"), tmp_path)
    assert [h.name for h in exp.hypotheses] == ["H0", "H1"] and exp.control.steps == 1575
    assert exp.control.script == "ctl/train_gpt.py" and exp.control.launcher == "torchrun"
    assert Path(exp.variance_from).resolve() == (record_repo / UNTIE).resolve()


def test_arms_in_subfolders_take_this_pr(tmp_path, cli, record_repo):
    r = cli("control", record_repo, "--record", "2026-01-20-SplitArms", "--out", "ctl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "this_pr/ holds the PR's runs (baseline/: the baseline it beat)" in r.stderr
    assert (tmp_path / "ctl/train_gpt.py").read_text() == mrr.script_text(1590)
    text = (tmp_path / "ctl/experiment.toml").read_text()
    assert "steps = 1590" in text and "2026-01-20-SplitArms/this_pr" in text


def test_the_records_own_script_names_its_logs(tmp_path, cli, record_repo):
    # a folder that keeps its train_gpt.py: the logs that embed it are the PR's, whatever their steps
    repo = tmp_path / "clone"
    shutil.copytree(record_repo / UNTIE, repo / UNTIE)
    (repo / UNTIE / "train_gpt.py").write_text(mrr.script_text(1600))
    r = cli("control", repo, "--out", "ctl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "the 3 logs that embed the folder's train_gpt.py are the PR's" in r.stderr
    assert "steps = 1600" in (tmp_path / "ctl/experiment.toml").read_text()


def test_log_names_the_one_to_rebuild_from(tmp_path, cli, record_repo):
    log = sorted((record_repo / "records/track_1_short/2025-11-10-OlderRecord").iterdir())[1]
    r = cli("control", record_repo, "--record", "2025-11-10-OlderRecord", "--log", log, "--out", "o",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"logs: {log.name} (named by --log)" in r.stderr and "steps = 1625" in (tmp_path / "o/experiment.toml").read_text()


def _one_line(r, *words):
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_refusals_are_one_line_and_write_nothing(tmp_path, cli, record_repo):
    _one_line(cli("control", record_repo, "--record", "2026-01-12-NoLogs", "--out", "a", cwd=tmp_path),
              "2026-01-12-NoLogs: no usable log", "--record")
    _one_line(cli("control", record_repo, "--record", "nope", "--out", "a", cwd=tmp_path),
              "--record nope: no such folder", "2026-01-26-UntieValueEmbeddings")
    _one_line(cli("control", record_repo, "--track", "long", "--out", "a", cwd=tmp_path),
              "--track long", "its tracks are short, medium")
    _one_line(cli("control", tmp_path, "--out", "a", cwd=tmp_path), "has no records/ folder")
    assert not (tmp_path / "a").exists()
    assert cli("control", record_repo, "--out", "a", cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    _one_line(cli("control", record_repo, "--out", "a", cwd=tmp_path), "already holds experiment.toml")
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before


def test_a_record_whose_logs_embed_no_code_is_refused(tmp_path, cli, record_repo):
    repo = tmp_path / "clone"
    folder = repo / "records/track_1_short/2026-03-01-Bare"
    folder.mkdir(parents=True)
    for log in sorted((record_repo / UNTIE).glob("*.txt"))[:2]:   # the run's lines, no code above
        text = log.read_text()
        (folder / log.name).write_text(text[text.index("Running Python"):])
    _one_line(cli("control", repo, "--out", "a", cwd=tmp_path), "no usable log",
              "finished logs embeds the script that wrote it")


def test_record_folder_dates():
    assert upstream.folder_date("2026-01-26-UntieValueEmbeddings") == dt.date(2026, 1, 26)
    assert upstream.folder_date("2025-01-16_Sub3Min") == dt.date(2025, 1, 16)
    assert upstream.folder_date("101024_Muon") == dt.date(2024, 10, 10)
    assert upstream.folder_date("2026-13-40-Nope") is None and upstream.folder_date("notes") is None


def test_the_generated_copy_of_the_record_is_refused_its_code_is_no_python(tmp_path, cli):
    # tests/fixtures/record_logs: the real record's shape (20 logs, both arms flat, a duplicate,
    # a name with a space, a README quoting a log line), but the code at each log's top is
    # filler that does not parse: the PR's logs are found, and refused as no usable log
    track = tmp_path / "clone/records/track_1_short"
    track.mkdir(parents=True)
    (track / "2026-01-26-UntieValueEmbeddings").symlink_to(FIXTURES / "record_logs")
    _one_line(cli("control", tmp_path / "clone", "--out", "ctl", cwd=tmp_path),
              "2026-01-26-UntieValueEmbeddings: no usable log (none of the 10 finished logs embeds the script")
    assert not (tmp_path / "ctl").exists()


def test_two_scripts_at_one_step_count_need_the_folders_script_or_log(tmp_path, cli, record_repo):
    # both arms at one step count in one flat folder: nothing says which is the PR's ...
    folder = tmp_path / "clone/records/track_1_short/2026-03-01-SameSteps"
    folder.mkdir(parents=True)
    for i, log in enumerate(sorted((record_repo / "records/track_1_short/2026-01-20-SplitArms")
                                   .glob("baseline/*.txt"))):
        text = log.read_text()
        if i == 0:   # another script, as the PR's would be: one line of its code differs
            text = text.replace("# A CPU stand-in", "# The PR's CPU stand-in", 1)
        (folder / log.name).write_text(text)
    _one_line(cli("control", tmp_path / "clone", "--out", "a", cwd=tmp_path),
              "its 2 logs at 1600 steps embed 2 different scripts", "--log FILE")
    # ... unless the folder keeps its script
    pr = sorted(folder.glob("*.txt"))[0].read_text()
    (folder / "train_gpt.py").write_text(pr[:pr.index("\n\n" + "-" * 40)])
    r = cli("control", tmp_path / "clone", "--out", "b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "logs: 1 finished run; the 1 log that embeds the folder's train_gpt.py is the PR's" in r.stderr
    assert "# The PR's CPU stand-in" in (tmp_path / "b/train_gpt.py").read_text()


def test_the_records_folder_itself_may_be_given(tmp_path, cli, record_repo):
    r = cli("control", record_repo / "records", "--track", "track_1_short", "--out", "ctl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("record: 2026-01-26-UntieValueEmbeddings")
