"""Statistics and reports over run records; no file I/O."""
