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
