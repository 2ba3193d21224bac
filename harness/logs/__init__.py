"""Speedrun logs: the streaming parser, the one classifier of a log, embedded sources."""
