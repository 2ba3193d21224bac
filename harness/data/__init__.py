"""Data on disk: experiment files (spec), results folders (store), groups of runs (sources)."""
