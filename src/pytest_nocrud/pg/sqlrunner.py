"""Run plain ``.sql`` files into a database, and explain failures by file and line.

Decisions (verified against psycopg 3.3 / PostgreSQL 15):

* Each file is sent WHOLE as one ``conn.execute(text)`` without parameters. psycopg then uses the
  simple query protocol, which accepts many statements per string, ``$$`` function bodies included --
  we never split SQL ourselves on the success path, so no home-made parser can misread a file.
* The connection must be in autocommit mode. PostgreSQL runs a multi-statement simple query as ONE
  implicit transaction, so every file is atomic (a failing file leaves nothing behind) while a file
  may still manage its own ``BEGIN``/``COMMIT``, and a single-statement file may use statements that
  refuse transaction blocks (``CREATE INDEX CONCURRENTLY``).
* The server reports a syntax or name error's position as a 1-based CHARACTER offset into the whole
  string we sent; it is converted to a line of the file. Runtime errors (division by zero, unique
  violation in seed data) carry no position: the file is then replayed statement by statement inside
  a transaction that is rolled back, to find the failing statement's line. That replay is a best
  effort on the failure path only: it is skipped for files with their own transaction control, and
  trusted only if it reproduces the same SQLSTATE.
* Every applied file is recorded in ``nocrud.sql_files(path, sha256, layer, applied_at, duration_ms)``
  inside the database right after it ran (path relative to the builder's directory; sha256 of the text
  that ran; ``layer`` says schema or data).
* Files ending ``.sql.j2`` are rendered with Jinja2 (extra ``pytest-nocrud[templates]``) with the
  ``nocrud_sql_vars`` and the environment (``env``); the rendered text is what is checksummed and run.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from ..errors import BuildError

__all__ = [
    "TRACKING_TABLE",
    "BuildError",
    "SqlFileError",
    "is_sql_file",
    "read_sql",
    "run_sql_files",
    "sql_files_in",
    "split_statements",
]

TEMPLATE_SUFFIX = ".sql.j2"
TRACKING_TABLE = "nocrud.sql_files"
_TRACKING_DDL = (
    "CREATE SCHEMA IF NOT EXISTS nocrud; "
    "CREATE TABLE IF NOT EXISTS nocrud.sql_files ("
    " path text NOT NULL, sha256 text NOT NULL, layer text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT clock_timestamp(), duration_ms double precision NOT NULL,"
    " PRIMARY KEY (layer, path))"
)


class SqlFileError(BuildError):
    """One SQL file failed. The message names the file, the line, the line's text and the server's
    error; the parts are kept as attributes for tools that want them."""

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int | None,
        sqlstate: str | None,
        server_message: str,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.sqlstate = sqlstate
        self.server_message = server_message


def is_sql_file(name: str) -> bool:
    """A plain ``.sql`` file or a Jinja2 ``.sql.j2`` template."""
    return name.endswith((".sql", TEMPLATE_SUFFIX))


def sql_files_in(directory: Path) -> list[Path]:
    """Every ``*.sql`` / ``*.sql.j2`` file under ``directory`` (recursively), in the order they must run:
    sorted by path relative to ``directory`` as a posix string, so ``001_``/``002_`` prefixes order
    them and the order never depends on the filesystem's listing order."""
    found = [p for p in directory.rglob("*") if is_sql_file(p.name) and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def read_sql(path: Path, sql_vars: Mapping[str, str] | None = None) -> str:
    """File text as the server will see it (UTF-8; a leading BOM, which PostgreSQL rejects, dropped;
    a ``.sql.j2`` template rendered)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.name.endswith(TEMPLATE_SUFFIX):
        return render_template(path, text, sql_vars or {})
    return text


def render_template(path: Path, text: str, sql_vars: Mapping[str, str]) -> str:
    """Render a ``.sql.j2`` file: ``nocrud_sql_vars`` as names, the environment as ``env``; an undefined
    name is an error (a typo must not render as empty SQL)."""
    try:
        import jinja2
    except ImportError:
        raise BuildError(
            f"{path.name} is a Jinja2 template (.sql.j2) but Jinja2 is not installed: "
            "pip install 'pytest-nocrud[templates]'"
        ) from None
    name = str(path)
    env = jinja2.Environment(
        # (source, filename, uptodate): with a filename, jinja's traceback frames carry the path
        loader=jinja2.FunctionLoader(lambda _: (text, name, lambda: True)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    try:
        rendered: str = env.get_template(name).render({**sql_vars, "env": dict(os.environ)})
        return rendered
    except jinja2.TemplateError as e:
        line = getattr(e, "lineno", None) or _template_line(e, name)
        where = f", line {line}" if line else ""
        source = text.splitlines()[line - 1].strip() if line and line <= len(text.splitlines()) else ""
        shown = f"\n    {line} | {source}" if source else ""
        raise BuildError(f"{path}{where}: cannot render template: {e}{shown}") from None


def _template_line(error: BaseException, name: str) -> int | None:
    """The template line a render-time error (e.g. an undefined name) came from: jinja rewrites its
    traceback so that template frames name the template file."""
    line, tb = None, error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def run_sql_files(
    conn: psycopg.Connection[Any],
    files: Sequence[Path],
    root: Path,
    *,
    log: Callable[[str], None] | None = None,
    layer: str | None = None,
    base: Path | None = None,
    sql_vars: Mapping[str, str] | None = None,
) -> None:
    """Execute ``files`` in the given order, each whole and atomically (see module doc).

    ``root`` shapes messages (paths are shown relative to it). With ``layer``, each applied file is
    recorded in ``nocrud.sql_files`` (path relative to ``base``, default ``root``). Raises
    ``SqlFileError`` for the first failing file, ``BuildError`` for an unreadable one; later files are
    not run, and the message says how many were skipped.
    """
    if not conn.autocommit:
        raise ValueError(
            "run_sql_files needs an autocommit connection: each file runs as its own implicit transaction"
        )
    if layer is not None:
        conn.execute(_TRACKING_DDL.encode())
    for index, path in enumerate(files):
        shown = display_path(path, root)
        try:
            _run_one(conn, path, shown, log, layer, display_path(path, base or root), sql_vars)
        except BuildError as e:
            rest = len(files) - index - 1
            if rest:
                files_word = "file" if rest == 1 else "files"
                e.args = (f"{e.args[0]}\nskipped: {rest} {files_word} after {shown}", *e.args[1:])
            raise


def _run_one(
    conn: psycopg.Connection[Any],
    path: Path,
    shown: str,
    log: Callable[[str], None] | None,
    layer: str | None,
    tracked: str,
    sql_vars: Mapping[str, str] | None,
) -> None:
    try:
        text = read_sql(path, sql_vars)
    except (OSError, UnicodeDecodeError) as e:
        raise BuildError(f"{shown}: cannot read SQL file: {e}") from e
    started = time.perf_counter()
    if text.strip():
        try:
            conn.execute(text.encode())  # bytes: no client-side placeholder parsing of '%'
        except psycopg.Error as e:
            raise _file_error(conn, shown, text, e) from e
    ms = (time.perf_counter() - started) * 1000
    if layer is not None:
        conn.execute(
            "INSERT INTO nocrud.sql_files (path, sha256, layer, duration_ms) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (layer, path) DO UPDATE SET sha256 = EXCLUDED.sha256, "
            "applied_at = EXCLUDED.applied_at, duration_ms = EXCLUDED.duration_ms",
            [tracked, hashlib.sha256(text.encode()).hexdigest(), layer, ms],
        )
    if log is not None:
        log(f"{shown} ({ms:.0f} ms)")


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in posix form when possible (``../x`` outside it), for messages."""
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # different drive on Windows
        return path.as_posix()


# --- failure explanation --------------------------------------------------------------------------


def _file_error(conn: psycopg.Connection[Any], shown: str, text: str, err: psycopg.Error) -> SqlFileError:
    diag = err.diag
    primary = diag.message_primary or str(err).strip()
    offset: int | None = None  # 0-based character offset into ``text``
    if diag.statement_position:
        offset = int(diag.statement_position) - 1
    elif not conn.broken:
        offset = _locate_by_replay(conn, text, err.sqlstate)
    line = col = None
    lines = text.split("\n")
    if offset is not None and 0 <= offset <= len(text):
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1)
    parts = [f"{shown}, line {line}: {primary}" if line else f"{shown}: {primary}"]
    if line is not None and col is not None and line <= len(lines):
        src = lines[line - 1].rstrip("\r")
        gutter = f"{line:>5} | "
        parts.append(gutter + src)
        caret_pad = "".join(c if c == "\t" else " " for c in src[:col])
        parts.append(" " * len(gutter) + caret_pad + "^")
    for label, value in (
        ("DETAIL", diag.message_detail),
        ("HINT", diag.message_hint),
        ("CONTEXT", diag.context),
    ):
        if value:
            parts.append(f"{label}: {value}")
    return SqlFileError(
        "\n".join(parts), path=shown, line=line, sqlstate=err.sqlstate, server_message=primary
    )


_TX_CONTROL = re.compile(
    r"^\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE,
)


def _locate_by_replay(
    conn: psycopg.Connection[Any],
    text: str,
    sqlstate: str | None,
) -> int | None:
    """Offset of the statement that raised a position-less error, found by re-running the (already
    rolled back) file one statement at a time in a transaction we roll back. None if unsure."""
    statements = split_statements(text)
    if len(statements) < 2 or any(_TX_CONTROL.match(s) for _, s in statements):
        return None
    found: int | None = None
    try:
        conn.execute(b"BEGIN")
        for start, stmt in statements:
            try:
                conn.execute(stmt.encode())
            except psycopg.Error as e:
                if e.sqlstate == sqlstate:
                    pos = e.diag.statement_position
                    found = start + (int(pos) - 1 if pos else 0)
                break
    except psycopg.Error:
        found = None
    finally:
        try:
            conn.execute(b"ROLLBACK")
        except psycopg.Error:
            pass
    return found


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z_0-9\u0080-\uffff]*)?\$")


def split_statements(text: str) -> list[tuple[int, str]]:
    """Split SQL text at top-level semicolons into ``(offset, statement)`` pairs, skipping quotes,
    ``E''`` strings, quoted identifiers, ``$tag$`` bodies and (nested) comments. Each statement
    starts at its first code character (leading comments dropped); comment-only pieces are dropped.
    Only used to locate errors, never to decide what runs."""
    out: list[tuple[int, str]] = []
    n = len(text)
    i = 0
    code_start: int | None = None  # offset of the current statement's first code character
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c == "/" and text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if c == ";":
            if code_start is not None:
                out.append((code_start, text[code_start : i + 1]))
            code_start = None
            i += 1
            continue
        if code_start is None:
            code_start = i
        i = _skip_token(text, i)
    if code_start is not None:
        out.append((code_start, text[code_start:].rstrip()))
    return out


def _skip_token(text: str, i: int) -> int:
    """Index just past the quoted string / identifier / dollar body starting at ``i`` (or past one
    plain character)."""
    n = len(text)
    c = text[i]
    if c == "'":
        prev2 = text[i - 2] if i >= 2 else " "
        escapes = i > 0 and text[i - 1] in "eE" and not (prev2.isalnum() or prev2 == "_")
        i += 1
        while i < n:
            if escapes and text[i] == "\\":
                i += 2
            elif text[i] == "'":
                if not text.startswith("''", i):
                    return i + 1
                i += 2
            else:
                i += 1
        return n
    if c == '"':
        j = text.find('"', i + 1)
        while j >= 0 and text.startswith('""', j):
            j = text.find('"', j + 2)
        return n if j < 0 else j + 1
    if c == "$" and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
        m = _DOLLAR_TAG.match(text, i)
        if m:
            j = text.find(m.group(0), m.end())
            return n if j < 0 else j + len(m.group(0))
    return i + 1
