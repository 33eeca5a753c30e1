"""The one exception type for problems a user can fix (bad input, missing files, unavailable runtime).

The CLI prints its message on one line and exits with `exit_code`; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class ParityError(Exception):
    """A user-fixable error. The message names the file, frame or stage and what to do."""

    exit_code = 2


class GateFailure(ParityError):
    """A comparison gate failed: the candidate does not make the reference's output."""

    exit_code = 1
