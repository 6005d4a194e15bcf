"""Settings, resolved once per process: command line > environment > ini > detected default.

Everything a user can set is declared in ``OPTIONS`` (one row per setting) so the command-line flag, the
environment variable and the ini key of a setting can never drift apart, and invalid values fail early
with a ``pytest.UsageError`` that names where the value came from and what is accepted.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from . import placeholders
from .errors import NocrudError
from .pg.builders import parse_builder
from .pg.conninfo import ConnInfo

APP_SCOPES = ("worker", "test")
CLONE_STRATEGIES = ("auto", "file_copy", "wal_log")


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting and the three places it can come from."""

    name: str  # the ini key, e.g. "nocrud_dsn"
    help: str
    flag: str | None = None  # command-line flag, e.g. "--nocrud-dsn"
    env: str | None = None  # environment variable
    ini: bool = True
    kind: str = "string"  # "string" | "linelist" | "bool" / "optional" (flags only; optional: --flag[=V])
    default: Any = None

    @property
    def dest(self) -> str:
        return self.name


OPTIONS: tuple[Option, ...] = (
    Option("nocrud_dsn", "Admin DSN of an existing PostgreSQL server; unset: embedded server.",
           flag="--nocrud-dsn", env="NOCRUD_DSN"),
    Option("nocrud_data_dir", "Where the embedded server keeps its cluster (kept between runs).",
           flag="--nocrud-data-dir", env="NOCRUD_DATA_DIR"),
    Option("nocrud_pg_bindir", "Directory with the PostgreSQL server binaries (initdb, postgres).",
           flag="--nocrud-pg-bindir", env="NOCRUD_PG_BINDIR"),
    Option("nocrud_serial", "Provision nothing; run flows one at a time against NOCRUD_APP_URL.",
           flag="--nocrud-serial", ini=False, kind="bool", default=False),
    Option("nocrud_rebuild", "Discard the template database and build it again.",
           flag="--nocrud-rebuild", ini=False, kind="bool", default=False),
    Option("nocrud_keep_failed", "Keep a failed test's database and print its DSN.",
           flag="--nocrud-keep-failed", ini=False, kind="bool", default=False),
    Option("nocrud_html", "Write the HTML run report (failures, per-worker timeline, slowest tests) to PATH.",
           flag="--nocrud-html", ini=False),
    Option("nocrud_perf", "Record every request as ndjson under DIR/<run_id>/ (see `nocrud perf`).",
           flag="--nocrud-perf", ini=False),
    Option("nocrud_coverage", "Endpoint coverage: which of the app's endpoints the run called; "
           "=PATH also writes JSON there.", flag="--nocrud-coverage", ini=False, kind="optional"),
    Option("nocrud_coverage_fail_under", "Fail the run when endpoint coverage is below N percent.",
           flag="--nocrud-coverage-fail-under", ini=False),
    Option("nocrud_openapi_path", "The app's OpenAPI schema path (endpoint coverage, nocrud scaffold)."),
    Option("nocrud_builder", "How the template is built: django | sql:<dir> | command:<cmd> | "
           "python:<module>:<function>."),
    Option("nocrud_template_inputs", "Glob lines whose files feed the template key.", kind="linelist"),
    Option("nocrud_fixtures", "Fixture files loaded into the template.", kind="linelist"),
    Option("nocrud_sql_vars", "NAME=value lines for templated SQL files (*.sql.j2).", kind="linelist"),
    Option("nocrud_incremental_command", "command: builders: build appended inputs on a clone of the "
           "previous schema layer (the tool tracks what it applied, e.g. Alembic).", default="false"),
    Option("nocrud_allow_empty_template", "Accept a template in which the builder created no table, view, "
           "sequence or function (refused by default: the builder most likely ran elsewhere).",
           default="false"),
    Option("nocrud_check_app_database", "Stop the run when the app is seen using another database than the "
           "test's (Django settings before any test; every app's successful writes).", default="true"),
    Option("nocrud_template_cache", "Directory of template archives (relative to the rootdir): a missing "
           "template is restored from there instead of built, and a built one is written there."),
    Option("nocrud_app_command", "Shell command that starts the app ({port}, {host}, {python})."),
    Option("nocrud_app_ready_path", "HTTP path polled until the app answers.", default="/"),
    Option("nocrud_app_env", "NAME=value lines added to the app's environment.", kind="linelist"),
    Option("nocrud_app_scope", "worker (default): one app per worker; test: restart per test.",
           default="worker"),
    Option("nocrud_app_start_timeout", "Seconds to wait for the app to answer.", default="30"),
    Option("nocrud_pool_size", "Ready clones kept per worker at least (more when clones are slow).",
           default="2"),
    Option("nocrud_reuse_unchanged", "Hand a database the test provably did not change to the next test "
           "instead of a fresh clone.", default="true"),
    Option("nocrud_clone_strategy", "CREATE DATABASE strategy: auto | file_copy | wal_log.",
           default="auto"),
    Option("nocrud_serial_reset", "Serial mode: shell command run before each flow."),
)  # fmt: skip

_BY_NAME = {option.name: option for option in OPTIONS}


def bare_optional(args: Sequence[str]) -> list[str]:
    """``--nocrud-coverage tests/`` must not read ``tests/`` as the PATH: a bare optional-value flag
    becomes ``--nocrud-coverage=`` (on, no value), so only ``--nocrud-coverage=PATH`` sets one."""
    flags = {option.flag for option in OPTIONS if option.kind == "optional"}
    return [f"{arg}=" if arg in flags else arg for arg in args]


def register(parser: pytest.Parser) -> None:
    group = parser.getgroup("nocrud", "pytest-nocrud: fresh database per test, live app")
    for option in OPTIONS:
        if option.flag:
            if option.kind == "bool":
                group.addoption(option.flag, action="store_true", dest=option.dest, help=option.help)
            elif option.kind == "optional":  # --flag alone, or --flag=VALUE
                group.addoption(
                    option.flag, dest=option.dest, nargs="?", const="", default=None, metavar="PATH",
                    help=option.help,
                )
            else:
                group.addoption(
                    option.flag,
                    dest=option.dest,
                    default=None,
                    metavar="VALUE",
                    help=option.help + (f" [env {option.env}]" if option.env else ""),
                )
        if option.ini and option.kind == "linelist":
            parser.addini(option.name, option.help, type="linelist", default=[])
        elif option.ini:
            parser.addini(option.name, option.help, type="string", default="")


@dataclasses.dataclass(frozen=True)
class Value:
    """A raw setting and where it came from (for error messages)."""

    raw: Any
    source: str


def _lookup(config: pytest.Config, option: Option, environ: Mapping[str, str]) -> Value:
    if option.flag:
        cli = config.getoption(option.dest, default=None)
        if cli not in (None, False) or (option.kind == "optional" and cli == ""):
            return Value(cli, option.flag)
    if option.env and environ.get(option.env):
        return Value(environ[option.env], f"environment variable {option.env}")
    if option.ini:
        ini = config.getini(option.name)
        if ini not in ("", [], None):
            return Value(ini, f"ini option {option.name}")
    return Value(option.default, "default")


def _int_in(value: Value, name: str, low: int, high: int) -> int:
    try:
        number = int(str(value.raw).strip())
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise pytest.UsageError(
            f"{value.source} = {value.raw!r}: {name} must be a whole number from {low} to {high}."
        )
    return number


def _choice(value: Value, choices: Sequence[str]) -> str:
    text = str(value.raw).strip().lower()
    if text not in choices:
        raise pytest.UsageError(f"{value.source} = {value.raw!r}: accepted values are {', '.join(choices)}.")
    return text


def _percent(value: Value) -> float | None:
    if value.raw is None:
        return None
    try:
        number = float(str(value.raw).strip().rstrip("%"))
    except ValueError:
        number = -1.0
    if not 0 <= number <= 100:
        raise pytest.UsageError(f"{value.source} = {value.raw!r}: a percentage from 0 to 100.")
    return number


def _dsn(value: Value) -> str | None:
    if value.raw is None:
        return None
    text = str(value.raw).strip()
    try:
        ConnInfo.parse(text)
    except NocrudError as exc:  # the message never echoes the DSN: it may hold a password
        raise pytest.UsageError(f"{value.source}: {exc}") from None
    return text


def _flag(value: Value) -> bool:
    text = str(value.raw).strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise pytest.UsageError(f"{value.source} = {value.raw!r}: accepted values are true, false.")
    return text in ("true", "1", "yes", "on")


def _env_lines(value: Value) -> tuple[tuple[str, str], ...]:
    pairs = []
    for line in value.raw or []:
        name, sep, text = line.partition("=")
        if not sep or not name.strip() or " " in name.strip():
            raise pytest.UsageError(f"{value.source}: {line!r} is not a NAME=value line.")
        try:
            placeholders.check(text.strip(), placeholders.APP_ENV)
        except ValueError as exc:
            raise pytest.UsageError(f"{value.source}: line {line.strip()!r}: {exc}") from None
        pairs.append((name.strip(), text.strip()))
    return tuple(pairs)


def _app_command(value: Value, env_lines: Sequence[tuple[str, str]]) -> str | None:
    """The command, its placeholders checked; it must hand the app its port ({port} or {app_port})."""
    command = str(value.raw).strip() if value.raw is not None else ""
    if not command:
        return None
    try:
        used = placeholders.check(command, placeholders.APP_COMMAND)
    except ValueError as exc:
        raise pytest.UsageError(f"{value.source} = {command!r}: {exc}") from None
    port_in_env = any("app_port" in placeholders.check(text, placeholders.APP_ENV) for _, text in env_lines)
    if "port" not in used and not port_in_env:
        raise pytest.UsageError(
            f"{value.source} = {command!r} has no {{port}}: every worker's app gets its own free port, "
            "and the app must listen on it. Pass it on the command line (e.g. --port {port}) or in "
            "nocrud_app_env (e.g. PORT={app_port})."
        )
    return command


def _builder(value: Value, rootpath: Path, fixtures: Sequence[str]) -> str | None:
    """The builder spec, checked now so a typo is one usage error, not one error per test."""
    spec = str(value.raw).strip() if value.raw is not None else ""
    if not spec:
        return None
    try:
        parse_builder(spec, root=rootpath, fixtures=fixtures)
    except ValueError as exc:
        raise pytest.UsageError(f"{value.source}: {exc}") from None
    return spec


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of one run, validated. Built by ``resolve``; never mutated."""

    rootpath: Path
    dsn: str | None = dataclasses.field(repr=False)  # may hold a password: never in a repr
    data_dir: Path | None
    pg_bindir: str | None
    serial: bool
    rebuild: bool
    keep_failed: bool
    html: Path | None
    perf: Path | None
    coverage: bool
    coverage_json: Path | None
    coverage_fail_under: float | None
    openapi_path: str | None
    builder: str | None
    template_inputs: tuple[str, ...]
    fixtures: tuple[str, ...]
    app_command: str | None
    app_ready_path: str
    app_env: tuple[tuple[str, str], ...]
    app_scope: str
    app_start_timeout: float
    pool_size: int
    clone_strategy: str
    serial_reset: str | None
    app_url: str | None  # serial mode's app (NOCRUD_APP_URL)
    sql_vars: tuple[tuple[str, str], ...] = ()
    incremental_command: bool = False
    allow_empty_template: bool = False
    check_app_database: bool = True
    reuse_unchanged: bool = True
    template_cache: Path | None = None  # nocrud_template_cache, absolute


def resolve(config: pytest.Config, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ``pytest.UsageError`` on the first bad one."""
    env = os.environ if environ is None else environ

    def get(name: str) -> Value:
        return _lookup(config, _BY_NAME[name], env)

    def text(name: str) -> str | None:
        raw = get(name).raw
        return (str(raw).strip() or None) if raw is not None else None

    data_dir = text("nocrud_data_dir")
    template_cache = text("nocrud_template_cache")
    html = text("nocrud_html")
    perf = text("nocrud_perf")
    coverage_raw = get("nocrud_coverage").raw
    fail_under = _percent(get("nocrud_coverage_fail_under"))
    openapi_path = text("nocrud_openapi_path")
    if openapi_path and not openapi_path.startswith("/"):
        raise pytest.UsageError(f"{get('nocrud_openapi_path').source}: the path must start with '/'.")
    ready_path = text("nocrud_app_ready_path") or "/"
    if not ready_path.startswith("/"):
        raise pytest.UsageError(f"{get('nocrud_app_ready_path').source}: the path must start with '/'.")
    timeout_value = get("nocrud_app_start_timeout")
    try:
        start_timeout = float(timeout_value.raw)
    except ValueError:
        start_timeout = -1.0
    if not 0 < start_timeout <= 3600:
        raise pytest.UsageError(f"{timeout_value.source} = {timeout_value.raw!r}: seconds from 0 to 3600.")
    serial = bool(get("nocrud_serial").raw)
    if serial and config.getoption("numprocesses", default=None):
        raise pytest.UsageError("--nocrud-serial runs flows one at a time: drop -n/--numprocesses.")
    app_url = env.get("NOCRUD_APP_URL") or None
    if serial and not app_url:
        raise pytest.UsageError(
            "--nocrud-serial runs flows against an app you started: set NOCRUD_APP_URL "
            "(e.g. http://127.0.0.1:8000) and NOCRUD_DSN / DATABASE_URL / PG* for its database."
        )
    if app_url and not app_url.startswith(("http://", "https://")):
        raise pytest.UsageError(f"NOCRUD_APP_URL = {app_url!r}: expected an http:// or https:// URL.")
    rootpath = Path(config.rootpath)
    fixtures = tuple(get("nocrud_fixtures").raw or ())
    app_env = _env_lines(get("nocrud_app_env"))
    return Settings(
        rootpath=rootpath,
        dsn=_dsn(get("nocrud_dsn")),
        data_dir=Path(data_dir).expanduser().absolute() if data_dir else None,
        pg_bindir=text("nocrud_pg_bindir"),
        serial=serial,
        rebuild=bool(get("nocrud_rebuild").raw),
        keep_failed=bool(get("nocrud_keep_failed").raw),
        html=Path(html) if html else None,
        perf=Path(perf) if perf else None,
        coverage=coverage_raw is not None or fail_under is not None,
        coverage_json=Path(coverage_raw) if coverage_raw else None,
        coverage_fail_under=fail_under,
        openapi_path=openapi_path,
        builder=_builder(get("nocrud_builder"), rootpath, fixtures),
        template_inputs=tuple(get("nocrud_template_inputs").raw or ()),
        fixtures=fixtures,
        app_command=_app_command(get("nocrud_app_command"), app_env),
        app_ready_path=ready_path,
        app_env=app_env,
        app_scope=_choice(get("nocrud_app_scope"), APP_SCOPES),
        app_start_timeout=start_timeout,
        pool_size=_int_in(get("nocrud_pool_size"), "nocrud_pool_size", 1, 16),
        clone_strategy=_choice(get("nocrud_clone_strategy"), CLONE_STRATEGIES),
        serial_reset=text("nocrud_serial_reset"),
        app_url=app_url.rstrip("/") if app_url else None,
        sql_vars=_env_lines(get("nocrud_sql_vars")),
        incremental_command=_flag(get("nocrud_incremental_command")),
        allow_empty_template=_flag(get("nocrud_allow_empty_template")),
        check_app_database=_flag(get("nocrud_check_app_database")),
        reuse_unchanged=_flag(get("nocrud_reuse_unchanged")),
        template_cache=(rootpath / Path(template_cache).expanduser()) if template_cache else None,
    )
