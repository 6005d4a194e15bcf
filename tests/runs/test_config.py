"""Settings resolution: precedence and one clear UsageError per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import run_inner

INNER = "def test_nothing():\n    pass\n"


def _usage_error(pytester: pytest.Pytester, *args: str) -> str:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    return result.stderr.str()


def test_bad_pool_size_names_the_source_and_range(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nnocrud_pool_size = lots\n")
    assert "ini option nocrud_pool_size = 'lots'" in _usage_error(pytester)
    assert "from 1 to 16" in _usage_error(pytester)


def test_bad_dsn_does_not_echo_it_and_says_what_is_accepted(pytester: pytest.Pytester) -> None:
    err = _usage_error(pytester, "--nocrud-dsn=host=x password=hunter2 bogus")
    assert "--nocrud-dsn: not a valid PostgreSQL DSN" in err
    assert "hunter2" not in err


def test_env_beats_ini_and_command_line_beats_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nnocrud_app_scope = sometimes\n")
    assert "ini option nocrud_app_scope" in _usage_error(pytester)
    monkeypatch.setenv("NOCRUD_DSN", "not a dsn")
    assert "environment variable NOCRUD_DSN" in _usage_error(pytester)
    assert "--nocrud-dsn" in _usage_error(pytester, "--nocrud-dsn=also not = a dsn")


def test_serial_mode_refuses_xdist(pytester: pytest.Pytester) -> None:
    assert "--nocrud-serial runs flows one at a time" in _usage_error(pytester, "--nocrud-serial", "-n", "2")


def test_valid_settings_pass_without_touching_postgres(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nnocrud_pool_size = 4\nnocrud_app_env =\n    A=1\n    B={dbname}\n")
    pytester.makepyfile(test_inner=INNER)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


# -- bad input is one usage error at start-up, before any test runs ----------------------------------


def test_invalid_builder_is_a_usage_error_listing_the_accepted_forms(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nnocrud_builder = alembic upgrade head\n")
    err = _usage_error(pytester)
    assert "ini option nocrud_builder: invalid nocrud_builder 'alembic upgrade head'" in err
    assert "command:<shell command>" in err and "python:<module>:<function>" in err


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("DB_PASSWORD={password!r:>99999999999}", "placeholder {password!r:>99999999999} has a conversion"),
        ("DB_NAME={database_name}", "unknown placeholder {database_name}; allowed placeholders: {dbname}"),
    ],
)
def test_bad_app_env_placeholder_is_a_usage_error(
    pytester: pytest.Pytester, line: str, expected: str
) -> None:
    pytester.makeini(f"[pytest]\nnocrud_app_env =\n    A=1\n    {line}\n")
    err = _usage_error(pytester)
    assert f"ini option nocrud_app_env: line {line!r}: {expected}" in err, err
    assert "MemoryError" not in err and "Traceback" not in err


def test_bad_app_command_placeholder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nnocrud_app_command = {python} app.py --port {prot}\n")
    err = _usage_error(pytester)
    assert "unknown placeholder {prot}; allowed placeholders: {port} {host} {python}" in err, err


def test_app_command_without_port_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nnocrud_app_command = {python} -m http.server 8000\n")
    err = _usage_error(pytester)
    assert "has no {port}" in err and "PORT={app_port}" in err, err
    # The port may reach the app through its environment instead:
    pytester.makeini(
        "[pytest]\nnocrud_app_command = {python} app.py\nnocrud_app_env =\n    PORT={app_port}\n"
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_dsn_with_a_bad_port_is_a_usage_error_without_the_password(pytester: pytest.Pytester) -> None:
    err = _usage_error(pytester, "--nocrud-dsn=postgresql://app:hunter2@db:5432:99/app")
    assert "--nocrud-dsn: the DSN's port '5432:99' is not a number from 1 to 65535" in err, err
    assert "hunter2" not in err and "ValueError" not in err


def test_bad_incremental_switch_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nnocrud_incremental_command = sometimes\n")
    assert "ini option nocrud_incremental_command = 'sometimes'" in _usage_error(pytester)


def test_command_builder_without_inputs_warns_that_it_never_rebuilds(
    pytester: pytest.Pytester, data_dir: Path
) -> None:
    pytester.makeini("[pytest]\nnocrud_builder = command:psql -q -c 'create table t (id int)'\n")
    pytester.makepyfile(test_inner="def test_db(nocrud_db):\n    pass\n")
    result = run_inner(pytester, data_dir, "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    assert (
        "the template will never rebuild when your schema changes"
        in result.stdout.str() + result.stderr.str()
    )
