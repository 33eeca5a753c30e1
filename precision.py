"""The precisions the toolkit exports, runs and gates: one list, one check."""

from __future__ import annotations

from .errors import ParityError

PRECISIONS = ("fp32", "fp16")


def checked_precision(value: str, where: str = "--precision") -> str:
    """`value` when it is a known precision, else a `ParityError` naming `where` and the choices."""
    if value not in PRECISIONS:
        raise ParityError(f"{where}: unknown precision {value!r}; use {' or '.join(PRECISIONS)}")
    return value
