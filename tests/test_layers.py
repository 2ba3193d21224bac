"""The import rules between the harness's layers, checked on the source (``ast``).

``LAYER_OF`` places every module of ``harness/`` in one layer; ``MAY_IMPORT`` says
which layers each layer may use. One-way: logs and design sit on the base; data on
logs; analysis on the base alone; run on data, logs and design; the commands on
everything. Analysis and design read no files: their data comes in as arguments. The trainer (``train/``) imports
nothing of the harness: it is one workload among many.

When the modules move into folders, ``LAYER_OF`` becomes a map of folders (or the
folder of each path gives its layer); the rules and the checker stay as they are.
``KNOWN_LEAKS`` and ``KNOWN_READERS`` list what breaks a rule today; the move removes
them, and a leak that is gone must leave its list (the test says so).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module or package (dotted, without the "harness." prefix) -> layer: a folder is a layer,
# the modules at the top of the package are the base every layer stands on
LAYER_OF = {
    "__init__": "base", "errors": "base", "records": "base", "thresholds": "base",
    "formats": "base", "arms": "base", "groups": "base", "caveat": "base",
    "logs": "logs", "design": "design", "data": "data", "analysis": "analysis", "run": "run",
    "cli": "cli", "__main__": "cli",
}
MAY_IMPORT = {
    "base": {"base"},
    "logs": {"base", "logs"},
    "design": {"base", "analysis", "design"},   # the sequential tests are built on the statistics
    "data": {"base", "logs", "data"},
    "analysis": {"base", "analysis"},
    "run": {"base", "logs", "design", "data", "run"},
    "cli": {"base", "logs", "design", "data", "analysis", "run", "cli"},
}
# layers that never read files: their data comes in as arguments
NO_FILE_READS = {"analysis", "design"}
READ_CALLS = {"open", "read_text", "read_bytes", "iterdir", "glob", "rglob", "listdir", "scandir",
              "walk", "load", "loadtxt", "read_csv"}

# (importer, imported) pairs that break a rule today; the move into folders removes them
KNOWN_LEAKS: dict = {}
# modules of a no-read layer that read files today
KNOWN_READERS = {
    "design.sequential": "the calibration cache ($HARNESS_CACHE or ~/.cache/harness), for every kind of "
                         "boundary (read_calibration, cache_calibration): to be passed in",
}


def harness_imports(tree: ast.AST, module: str) -> list[tuple[str, int]]:
    """Modules of the harness that ``module`` imports (dotted, prefix removed), with lines."""
    out = []
    package = ["harness", *module.split(".")[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:    # relative: from .x import y is relative to the module's package
                base = package[:len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # "from harness import gate" (or "from harness.run.backends import slurm") names a module
            names = [f"{target}.{a.name}" if target == "harness" or
                     f"{target}.{a.name}".removeprefix("harness.") in LAYER_OF else target
                     for a in node.names]
        else:
            continue
        for name in names:
            if name == "harness" or name.startswith("harness."):
                out.append((name.removeprefix("harness.") if name != "harness" else "__init__", node.lineno))
    return out


def layer(module: str) -> str | None:
    """The layer of a module, or of its closest mapped parent package."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        found = LAYER_OF.get(".".join(parts[:i]))
        if found is not None:
            return found
    return None


def file_reads(tree: ast.AST) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in READ_CALLS:
                out.append((name, node.lineno))
    return out


def violations(sources: dict[str, str], leaks=KNOWN_LEAKS, readers=KNOWN_READERS) -> tuple[list[str], set]:
    """Broken rules in ``{module: source}``, and the known leaks actually seen."""
    bad, seen = [], set()
    for module, text in sorted(sources.items()):
        tree = ast.parse(text)
        mine = layer(module)
        if mine is None:
            bad.append(f"harness/{module.replace('.', '/')}.py is in no layer: add it to LAYER_OF "
                       f"in tests/test_layers.py")
            continue
        for target, line in harness_imports(tree, module):
            theirs = layer(target)
            if theirs is None or theirs in MAY_IMPORT[mine]:
                continue    # an unmapped target is reported as its own module above
            key = (module, target)
            if key in leaks:
                seen.add(key)
                continue
            bad.append(f"{module}:{line} ({mine}) imports {target} ({theirs}); "
                       f"{mine} may import only {', '.join(sorted(MAY_IMPORT[mine]))}")
        if mine in NO_FILE_READS:
            reads = file_reads(tree)
            if reads and module in readers:
                seen.add(module)
                continue
            for call, line in reads:
                bad.append(f"{module}:{line} ({mine}) reads files ({call}); pass the data in instead")
    return bad, seen


def _package_sources() -> dict[str, str]:
    out = {}
    for path in sorted((ROOT / "harness").rglob("*.py")):
        rel = path.relative_to(ROOT / "harness").with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path.read_text()
    return out


def test_every_module_imports_only_its_own_or_lower_layers():
    bad, seen = violations(_package_sources())
    assert not bad, "\n".join(bad)
    gone = (set(KNOWN_LEAKS) | set(KNOWN_READERS)) - seen
    assert not gone, f"these leaks are fixed: remove them from KNOWN_LEAKS / KNOWN_READERS: {sorted(gone)}"


def test_the_trainer_imports_nothing_of_the_harness():
    found = []
    for path in sorted((ROOT / "train").rglob("*.py")):
        for target, line in harness_imports(ast.parse(path.read_text()), "train"):
            found.append(f"{path.relative_to(ROOT)}:{line} imports harness.{target}")
    assert not found, "\n".join(found)


def test_the_checker_catches_upward_sideways_and_reading_modules():
    # the rules themselves can fail: a statistics module that imports the runner, one
    # that reads a file, a log parser that imports the store, an unplaced module
    sources = {
        "analysis.stats": "from harness.run.runner import Runner\n",
        "analysis.gate": "import json\ndef f(p):\n    return json.load(open(p))\n",
        "logs.logparse": "from harness.data import store\n",
        "design.sequential": "from ..run.backends import slurm\n",
        "brand_new": "x = 1\n",
        "data.spec": "from harness.thresholds import RUNS\n",     # allowed: data on base
        "design.simulate": "from pathlib import Path\nPath('x').read_text()\n",
    }
    bad, _ = violations(sources, leaks={}, readers={})
    text = "\n".join(bad)
    assert "analysis.stats:1 (analysis) imports run.runner (run)" in text, text
    assert "analysis.gate:3 (analysis) reads files (load)" in text and "analysis.gate:3 (analysis) reads files (open)" in text
    assert "logs.logparse:1 (logs) imports data (data)" in text, text
    assert "design.sequential:1 (design) imports run.backends (run)" in text, text
    assert "harness/brand_new.py is in no layer" in text
    assert "design.simulate:2 (design) reads files (read_text)" in text
    assert not any(b.startswith("data.spec") for b in bad)
    assert len(bad) == 7, text
