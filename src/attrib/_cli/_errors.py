"""The one error the command line reports: a message, exit code 2, no traceback."""

from __future__ import annotations

__all__ = ["CLIError", "EXIT_USAGE"]

#: Exit status for bad input (as argparse uses for usage errors).
EXIT_USAGE = 2


class CLIError(Exception):
    """Bad input to the ``attrib`` command; its message is printed as one line."""
