"""Errors a user can fix: one line that names the thing and the fix, exit code 2."""


class UserError(Exception):
    """Bad input (file, flag, log, experiment spec). The message is shown as is."""

    exit_code = 2
