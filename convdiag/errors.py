"""Error types that the CLI turns into exit codes (DESIGN.md "Exit codes")."""

from __future__ import annotations


class ConvdiagError(Exception):
    """Base class of convdiag's own errors."""

    exit_code = 3


class InputError(ConvdiagError):
    """Bad input: missing or corrupt file, wrong format, bad option value. Exit code 2.

    The message is one line that names the file or flag and what is wrong.
    """

    exit_code = 2
