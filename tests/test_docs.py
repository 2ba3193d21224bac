"""The repository stands alone: users' contracts live in docs/, and nothing points outside.

The docs are checked against the code they describe: every key an experiment file
accepts, every field of a run record and every status is documented, and every
relative link in the Markdown files leads to a file of the repository.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from harness import records
from harness.data import spec

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP = {".git", ".venv", "__pycache__", "build", ".pytest_cache", "data", "logs", ".cache", ".slurm"}
# written in two parts so that this file does not match itself
OUTSIDE = re.compile("|".join(re.escape(a + b) for a, b in (
    ("shared/", "design"), ("../", "shared"), ("/work/", "shared"))))


def _files():
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(part in SKIP or part.endswith(".egg-info") for part in rel.parts) or not path.is_file():
            continue
        if path.stat().st_size > 2 << 20:
            continue
        yield rel, path.read_bytes().decode("utf-8", "replace")


def test_no_file_refers_to_anything_outside_the_repository():
    found = [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
             for rel, text in _files() for m in OUTSIDE.finditer(text)]
    assert not found, "references outside the repository (point at docs/ instead):\n" + "\n".join(found)


def test_every_relative_markdown_link_resolves():
    broken = []
    for md in [ROOT / "README.md", ROOT / "train" / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links: " + ", ".join(broken)


def _doc(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing"
    return path.read_text()


def test_experiment_file_doc_names_every_key():
    text = _doc("experiment-file.md")
    tables = {"[experiment]": spec.EXPERIMENT_KEYS, "[[hypothesis]]": spec.HYPOTHESIS_KEYS,
              "[defaults]": spec.DEFAULTS_KEYS, "[slurm]": spec.SLURM_KEYS}
    missing = [f"{table} {key}" for table, keys in tables.items() for key in keys
               if f"| `{key}` |" not in text]
    assert not missing, "docs/experiment-file.md does not describe: " + ", ".join(missing)
    for section in tables:
        assert f"`{section}`" in text or f"## `{section}`" in text or section in text


def test_results_folder_doc_names_every_record_field_and_status():
    text = _doc("results-folder.md")
    missing = [f.name for f in dataclasses.fields(records.RunRecord) if f"`{f.name}`" not in text]
    assert not missing, "docs/results-folder.md does not describe result.json fields: " + ", ".join(missing)
    missing = [s for s in records.STATUSES if f"| `{s}` |" not in text]
    assert not missing, "docs/results-folder.md does not describe statuses: " + ", ".join(missing)
    for name in ("launch.json", "spec.json", "sequential.json", "log.txt"):
        assert name in text


def test_log_format_and_statistics_docs_exist_and_are_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in ("experiment-file.md", "results-folder.md", "log-format.md", "statistics.md"):
        _doc(name)
        assert f"docs/{name}" in readme, f"README.md does not link docs/{name}"
    assert "step:N/N val_loss:" in _doc("log-format.md")
    stats = _doc("statistics.md")
    for column in ("Runs", "Steps", "Time μ", "Time σ", "Time +/-", "Time p", "Loss μ", "Loss σ",
                   "Loss +/-", "Loss p"):
        # a row of the definitions table: its first cell names the column
        assert any(line.startswith("| ") and column in [c.strip() for c in line.split("|")[1].split(",")]
                   for line in stats.splitlines()), f"docs/statistics.md does not define {column}"


def test_the_readme_is_a_start_page_that_links_every_doc():
    # the long explanations live in docs/, each reachable from one line of the README
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if f"(docs/{p.name})" not in readme]
    assert not unlinked, "README.md links no line to: " + ", ".join(unlinked)
    assert len(readme.splitlines()) <= 120, "README.md is a start page: move long explanations to docs/"
    for section in ("## Quick start", "## Workflow", "## Commands"):
        assert section in readme


# ---------------------------------------------------------------- flags and keys (issue 25)
import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from harness import cli as climod  # noqa: E402

FLAG = re.compile(r"(?<![\w/-])--[a-z][a-z0-9_-]*[a-z0-9]")
# flags the docs name that belong to other programs: program -> flags
FOREIGN = {
    "pip": {"--index-url"},
    "torchrun": {"--standalone", "--nproc_per_node"},
    "sbatch": {"--nodelist", "--exclusive", "--no-requeue"},
    "scripts/slurm-cluster.sh": {"--nodes"},
    "the trainer (an experiment's args become its flags)": {"--ve-layout", "--compile", "--digest"},
}


def _command_flags() -> dict[str, set[str]]:
    out = {}
    for name, (module, _) in climod.COMMANDS.items():
        p = argparse.ArgumentParser()
        importlib.import_module(module).configure(p)
        out[name] = {o for a in p._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
    return out


def _script_flags() -> set[str]:
    """Flags of the repository's own scripts (bench/, scripts/): every string of theirs that
    is a whole flag (an add_argument name, or an argv entry they compare with)."""
    import ast
    out = set()
    for path in sorted([*(ROOT / "bench").glob("*.py"), *(ROOT / "scripts").glob("*.py")]):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and FLAG.fullmatch(n.value):
                out.add(n.value)
    return out


def _user_docs() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_every_flag_the_docs_name_exists():
    known = set().union(*_command_flags().values(), _script_flags(), *FOREIGN.values(), {"--version", "--help"})
    missing = sorted({f"{md.relative_to(ROOT)}: {m.group(0)}" for md in _user_docs()
                      for m in FLAG.finditer(md.read_text()) if m.group(0) not in known})
    assert not missing, "flags named in the docs that no command takes:\n" + "\n".join(missing)


def test_every_flag_of_every_command_is_documented():
    text = "\n".join(md.read_text() for md in _user_docs())
    missing = [f"harness {c} {f}" for c, flags in _command_flags().items() for f in sorted(flags)
               if not re.search(re.escape(f) + r"(?![\w-])", text)]
    assert not missing, "flags of `--help` that README.md and docs/ do not mention: " + ", ".join(missing)


def test_harness_run_flags_are_listed_in_the_experiment_file_doc():
    text = _doc("experiment-file.md")
    section = text[text.index("## Command-line flags of `harness run`"):]
    missing = [f for f in sorted(_command_flags()["run"]) if not re.search(re.escape(f) + r"(?![\w-])", section)]
    assert not missing, "docs/experiment-file.md's flag list of harness run lacks: " + ", ".join(missing)


_TABLES = {"experiment": spec.EXPERIMENT_KEYS, "defaults": spec.DEFAULTS_KEYS,
           "hypothesis": spec.HYPOTHESIS_KEYS, "slurm": spec.SLURM_KEYS}


def test_every_experiment_file_example_in_the_docs_uses_real_keys():
    bad = []
    for md in _user_docs():
        for block in re.findall(r"```toml\n(.*?)```", md.read_text(), re.S):
            for section, value in tomllib.loads(block).items():
                if section not in _TABLES:
                    bad.append(f"{md.name}: [{section}]")
                    continue
                for table in value if isinstance(value, list) else [value]:
                    bad += [f"{md.name}: {section}.{k}" for k in table if k not in _TABLES[section]]
    assert not bad, "keys in the docs' experiment files that the parser refuses: " + ", ".join(bad)


def test_the_experiment_file_doc_tables_name_only_real_keys():
    text = _doc("experiment-file.md")
    every = set().union(*map(set, _TABLES.values()))
    rows = re.findall(r"^\| `([a-z_]+)` \|", text, re.M)
    assert rows and not [k for k in rows if k not in every]


def _parenthesis_after(text: str, at: int) -> str:
    """The text of the parenthesis that opens first after ``at`` (nested ones included)."""
    start = text.index("(", at)
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i]
    raise AssertionError(f"unclosed parenthesis after {text[at:at + 40]!r}")


def test_the_readme_lists_every_key_of_each_table():
    readme = (ROOT / "README.md").read_text()
    short = " ".join(readme[readme.index("In short:"):].split())
    for section, keys in (("[experiment]", spec.EXPERIMENT_KEYS), ("[defaults]", spec.DEFAULTS_KEYS),
                          ("[[hypothesis]]", spec.HYPOTHESIS_KEYS), ("[slurm]", spec.SLURM_KEYS)):
        listed = _parenthesis_after(short, short.index(f"`{section}`"))
        named = set(re.findall(r"[a-z_]+", listed))
        missing = [k for k in keys if k not in named]
        assert not missing, f"README.md's short list of {section} lacks: {', '.join(missing)}"


def test_the_status_columns_are_documented():
    from harness.cli import status
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `harness status"))
    missing = [c for c in status.COLUMNS if c not in row]
    assert not missing, "README.md's status row lacks: " + ", ".join(missing)
    doc = _doc("results-folder.md")
    assert not [c for c in status.COLUMNS if f"`{c}`" not in doc]


def test_the_statistics_doc_states_the_outlier_and_drift_rules_the_code_applies():
    from harness.analysis import stats
    text = _doc("statistics.md")
    outliers = next(b for b in text.split("\n- ") if b.startswith("**outliers**"))
    drift = next(b for b in text.split("\n- ") if b.startswith("**drift**"))
    assert f"{stats.OUTLIER_MIN_RUNS} or more runs" in outliers and f"{stats.OUTLIER_ALPHA:g}" in outliers
    assert "Bonferroni" in outliers and "MAD" not in text       # not the old 5-MAD rule
    assert f"{stats.DRIFT_MIN_RUNS} or more runs" in drift and f"{stats.DRIFT_ALPHA:g}" in drift
    assert "|rho| >=" not in text                                # not the old fixed rho cut


# keys the docs show inside `args` (an args entry becomes a trainer flag, not a harness key)
ARGS_EXAMPLES = {"ve_layout", "compile"}


def test_every_inline_experiment_key_in_the_docs_is_real_and_takes_that_value():
    every = set().union(*map(set, _TABLES.values()))
    choices = {"order": spec.ORDERS, "pairing": spec.PAIRINGS, "launcher": spec.LAUNCHERS,
               "backend": ("local", "slurm"), "time_test": ("welch", "trimmed")}
    bad = []
    for md in _user_docs():
        for key, value in re.findall(r"`([a-z_]+) = ([^`]*)`", md.read_text()):
            if key in ARGS_EXAMPLES:
                continue
            if key not in every:
                bad.append(f"{md.name}: {key}")
                continue
            try:
                parsed = tomllib.loads(f"{key} = {value}")[key]
            except tomllib.TOMLDecodeError:
                continue            # a placeholder such as [...]
            if key in choices and parsed not in choices[key]:
                bad.append(f"{md.name}: {key} = {value}")
    assert not bad, "experiment keys or values in the docs that the parser refuses: " + ", ".join(bad)

