"""Request bodies: a few typed fields per resource, checked by hand (no schema library needed).

An invalid body answers 400 with ``{"error": "invalid request body", "fields": {name: why}}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest


class Invalid(BadRequest):
    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("invalid request body")
        self.fields = dict(fields)


@dataclasses.dataclass(frozen=True)
class Field:
    kind: type
    required: bool = False
    check: Callable[[Any], str | None] | None = None  # returns why the value is wrong, or None
    many: bool = False  # a list of ``kind``

    def problem(self, value: Any) -> str | None:
        values = value if self.many else [value]
        if self.many and not isinstance(value, list):
            return f"must be a list of {self.kind.__name__}"
        for item in values:
            # bool is an int to Python, never to this API
            if not isinstance(item, self.kind) or (self.kind is int and isinstance(item, bool)):
                return f"must be {'a list of ' if self.many else ''}{self.kind.__name__}"
        if self.check is not None:
            return self.check(value)
        return None


def not_blank(value: str) -> str | None:
    return "must not be blank" if not value.strip() else None


def one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def body(spec: Mapping[str, Field], *, partial: bool = False) -> dict[str, Any]:
    """The JSON body, checked against ``spec``; ``partial`` (PATCH) makes every field optional."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise Invalid({"body": "must be a JSON object"})
    problems: dict[str, str] = {}
    for name in data.keys() - spec.keys():
        problems[name] = "unknown field"
    for name, field in spec.items():
        if name not in data:
            if field.required and not partial:
                problems[name] = "required"
            continue
        why = field.problem(data[name])
        if why is not None:
            problems[name] = why
    if problems:
        raise Invalid(problems)
    if partial and not data:
        raise Invalid({"body": "nothing to change"})
    return data
