"""Password masking (one place: ``ConnInfo.redact``), DSN parsing and ``{placeholder}`` checking."""

from __future__ import annotations

import pytest

from pytest_nocrud import placeholders
from pytest_nocrud.errors import UsageError
from pytest_nocrud.pg.conninfo import ConnInfo
from pytest_nocrud.report.summary import summary_lines

PASSWORD = "p@ss word/%x"  # needs quoting in a URL: '@', ' ', '/', '%'


def test_redact_masks_every_spelling_of_the_password() -> None:
    info = ConnInfo(host="db.example", port=5432, user="app", dbname="app", password=PASSWORD)
    assert info.dsn == "postgresql://app:p%40ss%20word%2F%25x@db.example:5432/app"
    assert info.masked() == "postgresql://app:***@db.example:5432/app"
    text = f"PGPASSWORD={PASSWORD} url={info.dsn} form=p%40ss+word%2F%25x"
    assert info.redact(text) == "PGPASSWORD=*** url=postgresql://app:***@db.example:5432/app form=***"
    assert ConnInfo(host="h", port=1, user="u", dbname="d").redact("no password here") == "no password here"


def test_repr_and_str_never_show_the_password() -> None:
    info = ConnInfo.parse(f"host=db port=6543 user=app dbname=shop password='{PASSWORD}'")
    assert info.password == PASSWORD and info.port == 6543
    for text in (repr(info), str(info), repr([info]), f"{info}"):
        assert "p@ss" not in text and "p%40ss" not in text and "***" in text


@pytest.mark.parametrize(
    "dsn", ["postgresql://u:pw@h:5432:99/db", "host=h port=abc", "host=h port=0", "host=h port=70000"]
)
def test_a_bad_port_is_a_usage_error_that_does_not_echo_the_dsn(dsn: str) -> None:
    with pytest.raises(UsageError, match="is not a number from 1 to 65535") as caught:
        ConnInfo.parse(dsn)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{password!r:>99999999999}", "placeholder {password!r:>99999999999} has a conversion or format"),
        ("{dbname:>10}", "has a conversion or format spec"),
        ("{database_name}", "unknown placeholder {database_name}; allowed placeholders: {dbname} {host}"),
        ("{dsn.__class__}", "unknown placeholder {dsn.__class__}"),
        ("{}", "unknown placeholder {}"),
        ("postgres://{user", "write {{ and }} for a literal brace"),
    ],
)
def test_bad_placeholders_say_what_is_wrong_and_what_is_allowed(template: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        placeholders.check(template, placeholders.APP_ENV)
    assert message in str(caught.value)
    assert "{app_port}" in str(caught.value), "the allowed names are listed"


def test_fill_substitutes_names_and_nothing_else() -> None:
    template = "{python} -m app --port {port} --json '{{\"a\": 1}}'"
    assert placeholders.check(template, placeholders.APP_COMMAND) == ["python", "port"]
    filled = placeholders.fill(template, {"python": "py", "port": "8000"})
    assert filled == "py -m app --port 8000 --json '{\"a\": 1}'"


def test_serial_mode_summary_names_the_database_not_a_template_key() -> None:
    stats = {"server": {"embedded": False, "version": "15.4"},
             "template": {"name": "shop", "key": "", "reused": True, "build_seconds": 0.0}}  # fmt: skip
    lines = summary_lines([stats])
    assert lines[1] == "database: shop (serial mode: used as is, nothing provisioned)"
    assert not any("(key" in line for line in lines)
