"""``{name}`` placeholders in ``nocrud_app_command`` and ``nocrud_app_env``: checked once, filled simply.

Only plain ``{name}`` is accepted. ``str.format`` would also run conversions, format specs, attribute
and index lookups (``{password!r:>99999999999}`` asks for a 100 GB string), so the settings are checked
at start-up with ``check`` and filled with ``fill``, which substitutes names and nothing else.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping

APP_COMMAND = ("port", "host", "python")
APP_ENV = ("dbname", "host", "port", "user", "password", "dsn", "app_port")

_FORMATTER = string.Formatter()


def allowed_text(allowed: Collection[str]) -> str:
    return " ".join("{" + name + "}" for name in allowed)


def check(template: str, allowed: Collection[str]) -> list[str]:
    """The placeholder names ``template`` uses; ``ValueError`` saying what is wrong and what is allowed."""
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ValueError(
            f"{exc} (write {{{{ and }}}} for a literal brace); allowed placeholders: {allowed_text(allowed)}"
        ) from None
    used = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if conversion or spec:
            suffix = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            written = "{" + name + suffix + "}"
            raise ValueError(
                f"placeholder {written} has a conversion or format spec; only plain {{name}} is "
                f"allowed: {allowed_text(allowed)}"
            )
        if name not in allowed:
            raise ValueError(
                f"unknown placeholder {{{name}}}; allowed placeholders: {allowed_text(allowed)}"
            )
        used.append(name)
    return used


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``{name}`` replaced by ``values[name]`` (after ``check``)."""
    out = []
    for literal, name, _, _ in _FORMATTER.parse(template):
        out.append(literal)
        if name is not None:
            out.append(values[name])
    return "".join(out)
