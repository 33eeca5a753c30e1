"""How the reference's stage knobs are declared: frozen dataclasses whose fields a port can get wrong.

A knob with a closed set of values is declared with `choice`, and its dataclass calls `check_choices` after
init, so an unknown value fails at once with a message naming the knob; tests find every knob's values
from the fields themselves.
"""

from __future__ import annotations

from dataclasses import field, fields
from typing import Any

from ..errors import ParityError


def choice(default: str, choices: tuple[str, ...], what: str | None = None, **metadata: Any) -> Any:
    """A dataclass field taking one of `choices` (`what` names it in an error: "unknown STFT pad mode ...")."""
    return field(default=default, metadata={"choices": choices, "what": what, **metadata})


def check_choices(knobs: Any) -> None:
    """A ParityError for the first field declared with `choice` whose value is not one of its choices."""
    for knob in fields(knobs):
        allowed = knob.metadata.get("choices")
        value = getattr(knobs, knob.name)
        if allowed is not None and value not in allowed:
            what = knob.metadata.get("what") or knob.name.replace("_", " ")
            raise ParityError(f"unknown {what} {value!r} ({type(knobs).__name__}.{knob.name}): use one of {', '.join(allowed)}")
