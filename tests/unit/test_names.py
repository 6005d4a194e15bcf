"""The database-name rules: every name fits 63 bytes, and the collector recognises what a pool made."""

from __future__ import annotations

import pytest

from pytest_nocrud.pg import names


def test_pool_names_fit_and_are_recognised_as_owned_by_their_prefix() -> None:
    prefix = names.pool_prefix("run-token", "gw-with-a-very-long-worker-name")
    assert names.check_pool_prefix(prefix) == prefix
    for name in (prefix, names.clone_name(prefix, 7), names.dirty_name(prefix, 10**9)):
        match = names.OWNED_NAME.match(name)
        assert match and match.group(1) == prefix, name
        assert len(name.encode()) <= names.MAX_NAME_BYTES
    assert names.OWNED_NAME.match(names.kept_name("t.py::test_x", "1")) is None


def test_kept_name_is_readable_unique_per_test_and_within_the_limit() -> None:
    nodeid = "tests/test_flows.py::test_" + "é" * 80 + "[case-1]"
    kept = names.kept_name(nodeid, "123")
    assert kept.startswith(names.FAILED_PREFIX) and len(kept.encode()) <= names.MAX_NAME_BYTES
    assert names.kept_name("a.py::test_one", "1") != names.kept_name("b.py::test_one", "1")
    assert names.kept_name("a.py::test_one", "1").startswith("nocrud_failed_test_one_")


def test_layer_names_and_their_build_prefixes_differ_by_kind() -> None:
    key = "ab" * 32
    data, schema = names.template_name(key), names.schema_name(key)
    assert (data, schema) == ("nocrud_tpl_" + key[:16], "nocrud_sch_" + key[:16])
    assert names.build_prefix(data) == "nocrud_bld_t" + key[:16] + "_"
    assert names.build_prefix(schema) == "nocrud_bld_s" + key[:16] + "_"


def test_a_name_postgres_would_truncate_is_refused() -> None:
    assert names.check_name("x" * 63) == "x" * 63
    with pytest.raises(ValueError, match="1..63 bytes"):
        names.check_name("é" * 32)
    with pytest.raises(ValueError):
        names.check_name("")
