"""JSON documents checked against their JSON Schema with `jsonschema`, one line on the first problem.

    validate(manifest, dump_schema(), path)   # ParityError "<path>: stages.frame.output.shape: ... (and 2 more)"

The best-match error (jsonschema's own ranking of the most relevant failure) is the one named.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...errors import ParityError

MESSAGE_CHARS = 160


def validate(document: Any, schema: dict[str, Any], where: str | Path, what: str = "") -> None:
    """Raise a `ParityError` naming `where` and the first problem when `document` breaks `schema`."""
    problems = schema_problems(document, schema)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        label = f" does not follow the {what} schema" if what else ""
        raise ParityError(f"{where}{label}: {problems[0]}{more}")


def schema_problems(document: Any, schema: dict[str, Any]) -> list[str]:
    """Every place `document` breaks `schema` as "path: problem", the most relevant first; empty when it conforms."""
    from jsonschema.exceptions import best_match

    errors = list(_validator(schema).iter_errors(document))
    if not errors:
        return []
    best = best_match(errors)
    lines = [_line(_deepest(error)) for error in [best] + [e for e in errors if e is not best]]
    return list(dict.fromkeys(lines))


def _deepest(error):
    """For an anyOf/oneOf failure, the most relevant failure inside it (its own message only repeats the value)."""
    from jsonschema.exceptions import best_match

    while error.context:
        error = best_match(error.context)
    return error


def _line(error) -> str:
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    message = error.message if len(error.message) <= MESSAGE_CHARS else error.message[: MESSAGE_CHARS - 3] + "..."
    return f"${path}: {message}"


@lru_cache(maxsize=16)
def _compiled(text: str):
    from jsonschema import Draft202012Validator

    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _validator(schema: dict[str, Any]):
    """The compiled validator of `schema`, built once per distinct schema."""
    return _compiled(json.dumps(schema, sort_keys=True))
