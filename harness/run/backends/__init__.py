"""Backends run attempts; see ``base.Backend``. ``get`` builds one by name."""
from __future__ import annotations

from harness.run.backends.base import Backend, Handle, LaunchSpec, Outcome

__all__ = ["Backend", "Handle", "LaunchSpec", "Outcome", "get"]


def get(name: str, **options) -> Backend:
    if name == "local":
        from harness.run.backends.local import LocalBackend
        return LocalBackend()
    if name == "slurm":
        from harness.run.backends.slurm import SlurmBackend
        return SlurmBackend(**options)
    from harness.errors import UserError
    raise UserError(f"unknown backend {name!r}; use --backend local or --backend slurm")
