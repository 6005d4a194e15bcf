"""``@template_setup``: API-level setup run once per template build, its outputs baked into the template.

With a fresh database per test, setup that every test repeats (logging in, creating the same
prerequisite rows through the API) costs the same every time and yields the same result. A function
decorated ``@template_setup`` in a ``conftest.py`` runs once, while the template is built, against the
app started on the template's database; what it returns (JSON) and the sessions ``bake_login`` records
are stored in the template, so every test starts with them for free.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import traceback
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import httpx

from ..errors import BuildError, UsageError
from ..flows import baked
from ..flows.timeline import RequestLog, make_client
from ..pg.setup_store import StoredSetup

__all__ = ["SetupFunction", "discover", "frozen", "run_setups", "setup_inputs", "template_setup"]

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "_nocrud_template_setup"


def template_setup(fn: F) -> F:
    """Run ``fn(client)`` once per template build; store its JSON return value in the template.

    ``client`` is an ``httpx.Client`` bound to the app running on the template being built. Define the
    function in a ``conftest.py``; tests read its outputs as ``nocrud_setup["<function name>"]``.
    """
    setattr(fn, _MARK, True)
    return fn


@dataclasses.dataclass(frozen=True)
class SetupFunction:
    name: str
    fn: Callable[[httpx.Client], Any]
    path: Path  # the file that defines it (a key input)
    line: int
    conftest: Path  # the conftest that made it visible (orders the run)

    @property
    def where(self) -> str:
        return f"{_shown(self.path)}:{self.line}"


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def discover(plugins: Iterable[object]) -> list[SetupFunction]:
    """The ``@template_setup`` functions of the loaded conftest modules, by conftest path then name."""
    found: dict[int, SetupFunction] = {}
    for plugin in plugins:
        file = getattr(plugin, "__file__", None)
        if not isinstance(plugin, types.ModuleType) or not file or Path(file).name != "conftest.py":
            continue
        for value in vars(plugin).values():
            if not (callable(value) and getattr(value, _MARK, False)):
                continue
            if id(value) in found and str(found[id(value)].conftest) <= str(Path(file).resolve()):
                continue  # visible through several conftests: ordered by the first path
            fn = inspect.unwrap(value)
            source = inspect.getsourcefile(fn) or file
            code = getattr(fn, "__code__", None)
            line = code.co_firstlineno if code is not None else 0
            name = getattr(fn, "__name__", repr(fn))
            found[id(value)] = SetupFunction(name, value, Path(source).resolve(), line, Path(file).resolve())
    setups = sorted(found.values(), key=lambda s: (str(s.conftest), s.name))
    by_name: dict[str, SetupFunction] = {}
    for setup in setups:
        other = by_name.setdefault(setup.name, setup)
        if other is not setup:
            raise UsageError(
                f"two @template_setup functions are named {setup.name!r} ({other.where}, {setup.where}); "
                "nocrud_setup is keyed by function name: rename one"
            )
    return setups


def setup_inputs(setups: Sequence[SetupFunction], root: Path) -> tuple[str, ...]:
    """Their source files as template-key input lines (relative to the root): a change rebuilds."""
    files = sorted({Path(os.path.relpath(s.path, root)).as_posix() for s in setups})
    return tuple(files)


def run_setups(setups: Sequence[SetupFunction], base_url: str) -> StoredSetup:
    """Run each setup against the app at ``base_url``; a failure is one BuildError naming it."""
    outputs: dict[str, Any] = {}
    sessions: dict[str, dict[str, Any]] = {}
    for setup in setups:
        log = RequestLog()
        with make_client(base_url, log=log, label=setup.name) as client, baked.recording() as recorded:
            try:
                value = setup.fn(client)
            except Exception as exc:  # noqa: BLE001 - any failure becomes one readable build error
                _fail(setup, exc, log)
        try:
            outputs[setup.name] = json.loads(json.dumps(value))
        except (TypeError, ValueError) as exc:
            raise BuildError(
                f"@template_setup function {setup.name!r} ({setup.where}) returned a value that is not "
                f"JSON data ({exc}); return dicts, lists, strings, numbers, booleans or None"
            ) from None
        sessions.update((login.identity, login.to_json()) for login in recorded)
    return StoredSetup(outputs, sessions)


def _fail(setup: SetupFunction, exc: Exception, log: RequestLog) -> NoReturn:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == setup.path]
    at = f" at {_shown(setup.path)}:{frames[-1].lineno}" if frames else ""
    first, *rest = (f"{type(exc).__name__}: {str(exc).strip()}".rstrip(": ")).splitlines()
    lines = [f"@template_setup function {setup.name!r} ({setup.where}) failed{at}: {first}"]
    lines += [f"  {line}" for line in rest]
    failing = log.last_failure() or (log.entries[-1] if len(log) else None)
    if failing is not None:
        lines += ["  failing request:", *(f"    {line}" for line in failing.detail().splitlines())]
    if len(log):
        lines += ["  requests of this setup:", log.format_table(max_rows=20)]
    raise BuildError("\n".join(lines)) from None


class FrozenDict(dict[str, Any]):
    """A read-only dict (still a dict, so ``json=`` payloads and ``==`` work as usual)."""

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("nocrud_setup is read-only: change a copy (copy.deepcopy(value) or dict(value))")

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(value, memo) for key, value in self.items()}

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return FrozenDict, (dict(self),)

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse


def frozen(value: Any) -> Any:
    """JSON data made read-only all the way down: objects become FrozenDicts, arrays tuples."""
    if isinstance(value, Mapping):
        return FrozenDict({str(k): frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value
