"""Builders and the SQL runner against a real PostgreSQL (the project's own embedded cluster)."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.builders import (
    BuildError,
    CommandBuilder,
    DjangoBuilder,
    PythonBuilder,
    SqlBuilder,
    SqlFileError,
    detect_django_project,
    parse_builder,
)
from pytest_nocrud.pg.conninfo import ConnInfo
from pytest_nocrud.pg.key import compute_key
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster
from pytest_nocrud.pg.sqlrunner import run_sql_files, split_statements, sql_files_in

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin(warm_data_dir: Path) -> Iterator[ConnInfo]:
    cluster = EmbeddedCluster(warm_data_dir)
    me = ProcessId.of(os.getpid())
    try:
        yield cluster.acquire(me).admin
    finally:
        cluster.release(me)


def create_database(server: ConnInfo, name: str) -> ConnInfo:
    """A fresh empty database (dropped first if a previous run left it)."""
    with admin.connect(server) as conn:
        admin.drop(conn, name)
        admin.create(conn, name)
    return server.with_db(name)


@pytest.fixture
def db(pg_admin: ConnInfo) -> ConnInfo:
    # A name that needs quoting, to prove nothing interpolates identifiers unquoted.
    return create_database(pg_admin, f"Build Target {next(_counter)}")


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def query(target: ConnInfo, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(target.dsn) as conn:
        return conn.execute(sql.encode()).fetchall()


def tables(target: ConnInfo) -> set[str]:
    return {str(r[0]) for r in query(target, "select tablename from pg_tables where schemaname = 'public'")}


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


# --- parse_builder --------------------------------------------------------------------------------


def test_parse_builder_forms_and_identities(tmp_path: Path) -> None:
    for directory in ("db/schema", "a", "b"):
        (tmp_path / directory).mkdir(parents=True)
    b = parse_builder("sql:db/schema/", root=tmp_path)
    assert isinstance(b, SqlBuilder) and b.kind == "sql" and b.identity == "sql:db/schema"
    assert b.default_inputs() == ["db/schema/**/*.sql", "db/schema/**/*.sql.j2"]
    assert parse_builder("sql:a", root=tmp_path).identity != parse_builder("sql:b", root=tmp_path).identity
    c = parse_builder("command: alembic upgrade head", root=tmp_path, fixtures=["seed.sql"])
    assert isinstance(c, CommandBuilder) and c.command == "alembic upgrade head"
    assert c.identity == "command:alembic upgrade head fixtures=seed.sql"
    assert c.default_inputs() == ["seed.sql"]
    p = parse_builder("python:myproj.db:create_schema", root=tmp_path)
    assert isinstance(p, PythonBuilder) and (p.module, p.function) == ("myproj.db", "create_schema")
    # identities never contain the absolute root
    assert all(str(tmp_path) not in x.identity for x in (b, c, p))


@pytest.mark.parametrize("spec", ["", "sql:", "alembic", "command:", "python:mod", "python:mod:not-a-name"])
def test_parse_builder_rejects_with_accepted_forms(tmp_path: Path, spec: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_builder(spec, root=tmp_path)
    msg = str(exc.value)
    for form in ("django", "sql:<dir>", "command:<shell command>", "python:<module>:<function>"):
        assert form in msg


def test_django_detection(tmp_path: Path) -> None:
    assert detect_django_project(tmp_path) is None
    with pytest.raises(ValueError, match="manage.py"):
        parse_builder("django", root=tmp_path)
    write(tmp_path, "site/manage.py", "")
    assert detect_django_project(tmp_path) == tmp_path / "site/manage.py"
    write(tmp_path, "site/blog/migrations/0001_initial.py", "")
    write(tmp_path, "site/blog/fixtures/posts.json", "[]")
    b = parse_builder("django", root=tmp_path, fixtures=["posts"])
    assert isinstance(b, DjangoBuilder) and b.identity == "django:site/manage.py fixtures=posts"
    assert b.default_inputs() == ["site/**/migrations/*.py", "site/**/fixtures/posts*"]
    write(tmp_path, "other/manage.py", "")
    assert detect_django_project(tmp_path) is None  # ambiguous: config must not guess
    assert parse_builder("django:other", root=tmp_path).identity == "django:other/manage.py"
    write(tmp_path, "manage.py", "")
    assert detect_django_project(tmp_path) == tmp_path / "manage.py"


# --- SQL runner / sql builder ---------------------------------------------------------------------


def test_sql_files_in_order(tmp_path: Path) -> None:
    for rel in ["010_late.sql", "002_b.sql", "001_a.sql", "005_dir/001_x.sql", "005_dir/notes.txt"]:
        write(tmp_path, rel, "")
    assert [p.relative_to(tmp_path).as_posix() for p in sql_files_in(tmp_path)] == [
        "001_a.sql",
        "002_b.sql",
        "005_dir/001_x.sql",
        "010_late.sql",
    ]


def test_sql_builder_runs_files_in_order_with_dollar_bodies(tmp_path: Path, db: ConnInfo) -> None:
    write(
        tmp_path,
        "db/schema/002_posts.sql",
        """
        create table posts(id serial primary key, user_id int references users(id), title text);
        create function title_upper() returns trigger language plpgsql as $$
        begin
          new.title := upper(new.title);  -- semicolons inside the body
          return new;
        end;
        $$;
        create trigger posts_upper before insert on posts for each row execute function title_upper();
    """,
    )
    write(tmp_path, "db/schema/001_users.sql", "create table users(id serial primary key, name text);\n")
    write(tmp_path, "db/schema/003_more/001_tags.sql", "create table tags(post_id int references posts(id));")
    write(
        tmp_path,
        "db/schema/003_more/002_fn.sql",
        """
        create function add(a int, b int) returns int language sql as $body$ select a + b; $body$;
        comment on table tags is 'it''s 100% ok; really';
    """,
    )
    write(
        tmp_path,
        "seed.sql",
        "insert into users(name) values ('ann'); insert into posts(user_id, title) values (1, 'hello');",
    )
    log = Lines()
    parse_builder("sql:db/schema", root=tmp_path, fixtures=["seed.sql"]).build(db, log)
    assert tables(db) == {"users", "posts", "tags"}
    assert query(db, "select title, add(2, 3) from posts") == [("HELLO", 5)]
    assert any("001_users.sql" in line for line in log)


def test_failing_sql_file_reports_file_and_line(tmp_path: Path, db: ConnInfo) -> None:
    write(tmp_path, "db/001_ok.sql", "create table kept(id int);")
    bad = "\n".join(
        [
            "-- 002: a multi-statement file",  # 1
            "create table a(id int);",  # 2
            "create table b(",  # 3
            "  id int",  # 4
            ");",  # 5
            "",  # 6
            "select * from no_such_table;",  # 7
            "create table c(id int);",  # 8
        ]
    )
    write(tmp_path, "db/002_bad.sql", bad)
    write(tmp_path, "db/003_never.sql", "create table never(id int);")
    with pytest.raises(SqlFileError) as exc:
        SqlBuilder(tmp_path, "db").build(db, Lines())
    err = exc.value
    msg = str(err)
    assert "db/002_bad.sql, line 7" in msg
    assert 'relation "no_such_table" does not exist' in msg
    assert "select * from no_such_table;" in msg
    assert (err.path, err.line, err.sqlstate) == ("db/002_bad.sql", 7, "42P01")
    assert isinstance(err, BuildError)
    # each file is atomic: the failing file left nothing, the earlier one is kept, later ones never ran
    assert tables(db) == {"kept"}


def test_syntax_error_line_and_hint(tmp_path: Path, db: ConnInfo) -> None:
    write(tmp_path, "db/001.sql", "create table t(id int);\n\ncreate tabel u(id int);\n")
    with pytest.raises(SqlFileError, match=r"db/001.sql, line 3: syntax error at or near \"tabel\""):
        SqlBuilder(tmp_path, "db").build(db, Lines())


def test_runtime_error_without_position_still_gets_a_line(tmp_path: Path, db: ConnInfo) -> None:
    write(
        tmp_path,
        "db/001.sql",
        "create table t(id int primary key);\ncreate function f() returns int "
        "language sql as $$ select 1; $$;\ninsert into t values (1);\n\ninsert into t values (1);\n",
    )
    with pytest.raises(SqlFileError) as exc:
        SqlBuilder(tmp_path, "db").build(db, Lines())
    assert exc.value.line == 5 and exc.value.sqlstate == "23505"
    assert "DETAIL: Key (id)=(1) already exists." in str(exc.value)
    assert tables(db) == set()  # the replay was rolled back


def test_plpgsql_error_inside_function_body_points_into_body(tmp_path: Path, db: ConnInfo) -> None:
    write(
        tmp_path,
        "db/001.sql",
        "select 1;\ncreate function g() returns int language plpgsql as $$\nbegin\n  retur 1;\nend;\n$$;\n",
    )
    with pytest.raises(SqlFileError, match=r"line 4: syntax error at or near \"retur\""):
        SqlBuilder(tmp_path, "db").build(db, Lines())


def test_file_with_own_transaction_control_and_utf8(tmp_path: Path, db: ConnInfo) -> None:
    write(tmp_path, "db/001.sql", "begin;\ncreate table t(x text);\ninsert into t values ('é ✓');\ncommit;\n")
    write(tmp_path, "db/002.sql", "\ufeffselect 'naïve';\nselect * from missing;\n")
    with pytest.raises(SqlFileError, match="db/002.sql, line 2"):
        SqlBuilder(tmp_path, "db").build(db, Lines())
    assert query(db, "select x from t") == [("é ✓",)]


def test_missing_sql_dir_names_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=str(tmp_path / "nope")):  # at parse time: a usage error
        parse_builder("sql:nope", root=tmp_path)


def test_a_fixture_inside_the_sql_dir_is_not_a_migration(tmp_path: Path) -> None:
    write(tmp_path, "db/001_schema.sql", "CREATE TABLE t (id int);")
    write(tmp_path, "db/seed.sql", "INSERT INTO t VALUES (1);")
    builder = parse_builder("sql:db", root=tmp_path, fixtures=["db/seed.sql"])
    assert [p.name for p in builder.schema_files()] == ["001_schema.sql"]
    assert isinstance(builder, SqlBuilder) and builder.fixtures_in_schema_dir() == ["db/seed.sql"]


def test_run_sql_files_requires_autocommit(tmp_path: Path, db: ConnInfo) -> None:
    with psycopg.connect(db.dsn) as conn, pytest.raises(ValueError, match="autocommit"):
        run_sql_files(conn, [], tmp_path)


def test_split_statements() -> None:
    text = "select 1; -- a; comment\nselect ';', $$;$$, $x$ $$ ; $x$, E'\\';', \"a;b\";/* ; /* ; */ */ ;"
    stmts = [s.strip() for _, s in split_statements(text)]
    assert stmts == ["select 1;", "select ';', $$;$$, $x$ $$ ; $x$, E'\\';', \"a;b\";"]


# --- command builder ------------------------------------------------------------------------------


def test_command_builder_gets_database_env(tmp_path: Path, db: ConnInfo) -> None:
    script = (
        "import os, psycopg; "
        "psycopg.connect(os.environ['DATABASE_URL'], autocommit=True)"
        ".execute('create table from_url(id int)')"
    )
    cmd = (
        f'psql -v ON_ERROR_STOP=1 -q -c "create table from_pg_env(db text default current_database())" '
        f'&& {sys.executable} -c "{script}" && echo built in $PWD'
    )
    log = Lines()
    CommandBuilder(tmp_path, cmd).build(db, log)
    assert tables(db) == {"from_pg_env", "from_url"}
    assert any(f"built in {tmp_path}" in line for line in log)


def test_failing_command_reports_exit_code_and_last_lines(tmp_path: Path, db: ConnInfo) -> None:
    cmd = "for i in $(seq 1 100); do echo line $i; done; echo boom >&2; exit 3"
    with pytest.raises(BuildError) as exc:
        parse_builder("command:" + cmd, root=tmp_path).build(db, Lines())
    msg = str(exc.value)
    assert "exit code 3" in msg and "boom" in msg and "line 100" in msg
    assert "line 50\n" not in msg  # only the tail


def test_command_output_masks_password(tmp_path: Path) -> None:
    target = ConnInfo(host="/nowhere", port=1, user="u", dbname="d", password="s3cret-pw")
    with pytest.raises(BuildError) as exc:
        CommandBuilder(tmp_path, "echo $DATABASE_URL; echo $PGPASSWORD; exit 1").build(target, Lines())
    assert "s3cret-pw" not in str(exc.value) and "***" in str(exc.value)


# --- python builder -------------------------------------------------------------------------------


def test_python_builder_gets_connection_and_commits(tmp_path: Path, db: ConnInfo) -> None:
    write(tmp_path, "myproj/__init__.py", "")
    write(
        tmp_path,
        "myproj/schema.py",
        """
        def create(conn):
            assert not conn.autocommit
            conn.execute("create table from_python(id int)")
            conn.execute("insert into from_python values (%s)", (42,))
    """,
    )
    write(tmp_path, "seed.sql", "insert into from_python values (43);")
    b = parse_builder("python:myproj.schema:create", root=tmp_path, fixtures=["seed.sql"])
    assert b.default_inputs() == ["myproj/schema.py", "seed.sql"]
    b.build(db, Lines())
    assert query(db, "select id from from_python order by id") == [(42,), (43,)]
    assert str(tmp_path) not in sys.path


def test_python_builder_failure_rolls_back(tmp_path: Path, db: ConnInfo) -> None:
    write(
        tmp_path,
        "tools/build_db.py",
        """
        def build(conn):
            conn.execute("create table half(id int)")
            raise RuntimeError("cannot finish")
    """,
    )
    b = parse_builder("python:tools/build_db.py:build", root=tmp_path)
    assert b.default_inputs() == ["tools/build_db.py"]
    with pytest.raises(BuildError, match="RuntimeError: cannot finish"):
        b.build(db, Lines())
    assert tables(db) == set()
    with pytest.raises(BuildError, match="no function 'nope'"):
        parse_builder("python:tools/build_db.py:nope", root=tmp_path).build(db, Lines())
    with pytest.raises(BuildError, match="cannot import"):
        parse_builder("python:no_such_module_xyz:f", root=tmp_path).build(db, Lines())


def test_python_builder_failure_names_the_file_and_line_in_the_users_code(
    tmp_path: Path, db: ConnInfo
) -> None:
    write(
        tmp_path,
        "tools/schema.py",
        """
        def add_tables(conn):
            conn.execute("create table fine(id int)")
            conn.execute("creat table oops(id int)")

        def build(conn):
            add_tables(conn)
    """,
    )
    with pytest.raises(BuildError) as caught:
        parse_builder("python:tools/schema.py:build", root=tmp_path).build(db, Lines())
    message = str(caught.value)
    assert "raised SyntaxError: syntax error at or near \"creat\"" in message, message
    # The deepest frame of the user's code, not psycopg's: where the fix goes.
    assert 'at tools/schema.py:4 in add_tables: conn.execute("creat table oops(id int)")' in message


# --- django builder -------------------------------------------------------------------------------

EXAMPLE_APP = Path(__file__).resolve().parents[2] / "example_app"


def _example_manage_py() -> Path | None:
    return detect_django_project(EXAMPLE_APP) if EXAMPLE_APP.is_dir() else None


@pytest.mark.skipif(_example_manage_py() is None, reason="example_app (Django) not present")
def test_django_builder_migrates_and_names_failing_migration(tmp_path: Path, pg_admin: ConnInfo) -> None:
    app = tmp_path / "example_app"
    shutil.copytree(EXAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    good = create_database(pg_admin, f"django ok {next(_counter)}")
    builder = parse_builder("django", root=app)
    builder.build(good, Lines())
    assert "django_migrations" in tables(good)

    migrations = sorted(p for p in app.rglob("migrations/0*.py") if "site-packages" not in p.parts)
    last = migrations[-1]
    app_label = last.parent.parent.name
    broken = (
        textwrap.dedent("""
        from django.db import migrations

        class Migration(migrations.Migration):
            dependencies = [(APP, PREVIOUS)]
            operations = [migrations.RunSQL("select * from table_that_is_not_there")]
    """)
        .replace("APP", repr(app_label))
        .replace("PREVIOUS", repr(last.stem))
    )
    (last.parent / "9999_broken.py").write_text(broken)
    bad = create_database(pg_admin, f"django bad {next(_counter)}")
    with pytest.raises(BuildError) as exc:
        parse_builder("django", root=app).build(bad, Lines())
    msg = str(exc.value)
    assert f"while applying migration {app_label}.9999_broken" in msg
    assert "table_that_is_not_there" in msg


@pytest.mark.skipif(_example_manage_py() is None, reason="example_app (Django) not present")
def test_django_fixtures_are_found_like_every_path_setting_and_feed_the_key(
    tmp_path: Path, pg_admin: ConnInfo
) -> None:
    """A line relative to the rootdir (``example_app/fixtures/users.json`` with manage.py one level
    down: Django's own lookup from manage.py's directory found no fixture 'users'), one relative to
    manage.py's directory (accepted before) and a bare name Django finds in an app's fixtures/ all
    load; the key hashes exactly those files; a miss names where loaddata ran."""
    root = tmp_path / "repo"
    app = root / "example_app"
    shutil.copytree(EXAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    (app / "catalog" / "fixtures").mkdir()
    (app / "fixtures" / "catalog.json").rename(app / "catalog" / "fixtures" / "seed_catalog.json")
    extra = '[{"model": "catalog.universe", "pk": 99, "fields": {"name": "From manage.py dir"}}]'
    write(app, "extra/more.json", extra)
    fixtures = ["example_app/fixtures/users.json", "seed_catalog", "extra/more.json"]
    builder = parse_builder("django", root=root, fixtures=fixtures)
    assert isinstance(builder, DjangoBuilder)

    assert builder.fixture_inputs() == [
        "example_app/fixtures/users.json",
        "example_app/**/fixtures/seed_catalog*",
        "example_app/extra/more.json",
    ]
    key = compute_key(root, builder.fixture_inputs(), builder.identity, 15)
    assert list(key.files) == [
        "example_app/catalog/fixtures/seed_catalog.json",
        "example_app/extra/more.json",
        "example_app/fixtures/users.json",
    ]

    target = create_database(pg_admin, f"django fixtures {next(_counter)}")
    builder.build(target, Lines())
    universes = [row[0] for row in query(target, "select name from catalog_universe order by id")]
    assert "Northwind Saga" in universes and universes[-1] == "From manage.py dir"
    assert query(target, "select count(*) from accounts_user")[0][0] > 0

    missing = parse_builder("django", root=root, fixtures=["example_app/fixtures/nope.json"])
    schema_only = create_database(pg_admin, f"django no fixture {next(_counter)}")
    missing.build_schema(schema_only, Lines())
    with pytest.raises(BuildError) as exc:
        missing.load_fixtures(schema_only, Lines())
    msg = str(exc.value)
    assert "No fixture named 'nope' found" in msg, msg
    assert f"loaddata ran in {app}." in msg, msg
    assert f"Not a file relative to the rootdir ({root})" in msg and "example_app/fixtures/nope.json" in msg


# --- noorm-grade runner: skipped files, templates, the command builder as users run it -------------


def test_failure_says_how_many_files_were_skipped(tmp_path: Path, db: ConnInfo) -> None:
    write(tmp_path, "db/001_ok.sql", "create table ok(id int);")
    write(tmp_path, "db/002_bad.sql", "select * from nowhere;")
    write(tmp_path, "db/003_a.sql", "create table a(id int);")
    write(tmp_path, "db/004_b.sql", "create table b(id int);")
    with pytest.raises(SqlFileError) as exc:
        SqlBuilder(tmp_path, "db").build(db, Lines())
    assert str(exc.value).endswith("skipped: 2 files after db/002_bad.sql")
    assert tables(db) == {"ok"}
    assert query(db, "select path from nocrud.sql_files") == [("001_ok.sql",)]


def test_sql_j2_rendered_with_vars_and_environment(
    tmp_path: Path, db: ConnInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOCRUD_TEST_SUFFIX", "from_env")
    write(tmp_path, "db/001_t.sql.j2", "create table t_{{ NAME }}_{{ env.NOCRUD_TEST_SUFFIX }}(id int);\n")
    SqlBuilder(tmp_path, "db", sql_vars={"NAME": "x"}).build(db, Lines())
    assert tables(db) == {"t_x_from_env"}
    ((path, sha),) = query(db, "select path, sha256 from nocrud.sql_files")
    assert path == "001_t.sql.j2"
    assert sha == hashlib.sha256(b"create table t_x_from_env(id int);\n").hexdigest(), "the rendered text"


def test_sql_j2_undefined_name_and_missing_jinja_are_clear_errors(
    tmp_path: Path, db: ConnInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "db/001_t.sql.j2", "create table {{ TYPO }}(id int);\n")
    with pytest.raises(BuildError, match=r"001_t.sql.j2.*cannot render template: 'TYPO' is undefined"):
        SqlBuilder(tmp_path, "db").build(db, Lines())
    monkeypatch.setitem(sys.modules, "jinja2", None)  # as if the extra were not installed
    with pytest.raises(BuildError, match=r"pip install 'pytest-nocrud\[templates\]'"):
        SqlBuilder(tmp_path, "db").build(db, Lines())


def test_command_builder_fills_python_and_puts_the_interpreter_first_on_path(
    tmp_path: Path, db: ConnInfo
) -> None:
    log = Lines()
    cmd = "{python} -c 'import sys; print(\"EXE\", sys.executable)' && echo FIRST=${PATH%%:*}"
    CommandBuilder(tmp_path, cmd).build(db, log)
    assert f"  | EXE {sys.executable}" in log
    assert f"  | FIRST={Path(sys.executable).parent}" in log
